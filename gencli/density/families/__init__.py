"""Density families: each module fits its scikit-learn estimator and round-trips it as plain data.

A family module offers ``fit(Z, options, seed) -> estimator``, ``to_params(estimator) -> dict``,
``from_params(dict) -> estimator`` and ``sample(params, n, rng) -> array``, all in the
estimator's own (possibly standardized) space. ``boxes`` scores discrete columns as the
exact probability mass of their integer boxes (mixtures and Gaussian kernel densities).
"""

FAMILIES = ("gmm", "kde")
