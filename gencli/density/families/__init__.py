"""Density families: each module fits its scikit-learn estimator and round-trips it as plain data.

A family module offers ``fit(Z, options, seed) -> estimator``, ``to_params(estimator) -> dict``,
``from_params(dict) -> estimator`` and ``sample(params, n, rng) -> array``, all in the
estimator's own (possibly standardized) space.
"""

FAMILIES = ("gmm", "kde")
