"""The curse of dimensionality in numbers: figures (pure functions returning records), their
rendering as a table, CSV or JSON, and the plot. ``gencli curse`` is in :mod:`gencli.cli.curse`.
"""
