"""Densities: :class:`~gencli.density.model.DensityModel` (standardizing transform, estimator
and metadata), the density families (``families/``), and model files (plain data read without
running code, :mod:`gencli.density.modelfile`; what a file holds, :mod:`gencli.density.modelinfo`).
"""
