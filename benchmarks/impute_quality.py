"""How well does gencli fill in missing cells? Held-out cells of real data sets, imputed by
the conditional mean of gencli's default density, against column means and scikit-learn's
KNNImputer and IterativeImputer.

For each data set and seed: a seeded 80/20 split of the rows; gencli's default fit
(``gencli.fit(train, seed=0)``; diabetes' sex is a whole-number column, modelled as
discrete) on the training rows; in the test rows each cell is hidden
with probability ``--fraction`` (0.2), completely at random (a row keeps at least one
cell); every method fills the hidden cells from the training rows and the test rows' other
cells. The error is the root mean square over hidden cells of (imputed - true) / sd, sd the
column's standard deviation in the training rows, so columns in different units weigh
alike. Lower is better; the last column is gencli's error over the column means'.

    python benchmarks/impute_quality.py                   # iris, wine, diabetes, breast_cancer
    python benchmarks/impute_quality.py --seeds 5 --fraction 0.3
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

DATA_SETS = ("iris", "wine", "diabetes", "breast_cancer")


def load(name: str) -> pd.DataFrame:
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    bunch = loader(as_frame=True, **({"scaled": False} if name == "diabetes" else {}))
    frame = bunch.data.astype(float)
    if name == "diabetes":
        frame["progression"] = bunch.target.astype(float)  # a measurement, not a label
    return frame


def hide(test: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of hidden cells: each with probability ``fraction``, never a whole row."""
    mask = rng.random(test.shape) < fraction
    full = mask.all(axis=1)
    mask[full, rng.integers(0, test.shape[1], size=int(full.sum()))] = False
    return mask


def methods(train: pd.DataFrame) -> dict[str, object]:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    import gencli

    values = train.to_numpy()
    model = gencli.fit(train, seed=0)
    fitted = {
        "column means": SimpleImputer(strategy="mean").fit(values),
        "KNNImputer(5)": KNNImputer(n_neighbors=5).fit(values),
        "IterativeImputer": IterativeImputer(random_state=0, max_iter=20).fit(values),
    }
    return {"gencli": model, **fitted}


def run(name: str, seed: int, fraction: float) -> dict[str, float]:
    frame = load(name)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    n_test = round(0.2 * len(frame))
    train, test = frame.iloc[np.sort(order[n_test:])], frame.iloc[np.sort(order[:n_test])]
    truth = test.to_numpy()
    mask = hide(truth, fraction, rng)
    gappy = np.where(mask, np.nan, truth)
    sd = train.to_numpy().std(axis=0)
    errors: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, entry in methods(train).items():
            if key == "gencli":
                filled = entry.impute(pd.DataFrame(gappy, columns=test.columns))  # type: ignore[attr-defined]
            else:
                filled = entry.transform(gappy)  # type: ignore[attr-defined]
            scaled = ((filled - truth) / sd)[mask]
            errors[key] = float(np.sqrt(np.mean(scaled**2)))
    errors["hidden cells"] = int(mask.sum())
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--only", nargs="*", default=list(DATA_SETS))
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"RMSE of imputed held-out cells in training sd units, {args.fraction:.0%} of cells "
          f"hidden at random, mean over seeds 0..{args.seeds - 1} (lower is better)\n")  # fmt: skip
    header = "| data (rows, columns) | hidden cells | gencli default | column means | " \
        "KNNImputer(5) | IterativeImputer | gencli / means |"  # fmt: skip
    print(header)
    print("|" + " --- |" * 7)
    for name in args.only:
        runs = [run(name, seed, args.fraction) for seed in range(args.seeds)]
        shape = load(name).shape
        mean = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
        cells = int(np.mean([r["hidden cells"] for r in runs]))
        print(
            f"| {name} {shape} | {cells} | {mean['gencli']:.3f} | {mean['column means']:.3f} | "
            f"{mean['KNNImputer(5)']:.3f} | {mean['IterativeImputer']:.3f} | "
            f"{mean['gencli'] / mean['column means']:.2f} |"
        )
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
