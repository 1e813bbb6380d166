"""gencli: learn the distribution behind a table of numbers, score new rows, draw new ones.

The Python API mirrors the command line::

    import gencli
    model = gencli.fit("sample_data/iris.csv", model="gmm", components=3)
    model.score_samples(rows)      # log-density per row, in the data's own units
    model.sample(1000, seed=0)     # new rows
    model.save("iris.pkl"); gencli.load("iris.pkl")

and scikit-learn estimators wrap it for Pipelines and GridSearchCV::

    search = GridSearchCV(gencli.GaussianMixtureDensity(), {"components": [1, 2, 3]})

Attributes are imported lazily so that ``gencli --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gencli._version import __version__
from gencli.native import one_blas_thread_under_address_limit

one_blas_thread_under_address_limit()  # before numpy loads OpenBLAS; see gencli.native

if TYPE_CHECKING:
    from gencli.density.model import DensityModel
    from gencli.density.modelfile import load
    from gencli.errors import GencliError, GencliWarning
    from gencli.estimators import AutoDensity, GaussianMixtureDensity, KernelDensity
    from gencli.fitting.fitter import fit

#: Where each public name lives; imported on first use.
_LAZY = {
    "fit": "gencli.fitting.fitter",
    "load": "gencli.density.modelfile",
    "DensityModel": "gencli.density.model",
    "GaussianMixtureDensity": "gencli.estimators",
    "KernelDensity": "gencli.estimators",
    "AutoDensity": "gencli.estimators",
    "GencliError": "gencli.errors",
    "GencliWarning": "gencli.errors",
}

__all__ = [
    "AutoDensity",
    "DensityModel",
    "GaussianMixtureDensity",
    "GencliError",
    "GencliWarning",
    "KernelDensity",
    "__version__",
    "fit",
    "load",
]


def __dir__() -> list[str]:
    """The public names, although they are imported only on first use (tab completion),
    and the module's dunders; not the helpers this file imports for itself."""
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gencli' has no attribute {name!r}")
