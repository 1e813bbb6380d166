"""Fitting a density to a table: orchestration (:mod:`gencli.fitting.fitter`), the candidate
search per family (:mod:`gencli.fitting.family_fits`) and model selection
(:mod:`gencli.fitting.selection`).
"""
