"""Fitting on a Dask cluster: the rows stay on the workers, only statistics travel.

A mixture is fitted by EM over every part (:mod:`gencli.fitting.em_stats`): one pass gives
the standardization (moments combined exactly), a seeded sample of the training rows gives
k-means centres, then each EM iteration sends the current parameters of every candidate
still running to every part and reduces the parts' statistics in a tree; the M-step, the
repairs and the convergence rule run here, as in the local engine. Candidates (K, covariance)
share each pass over the data. The chosen mixture is measured on the held-out rows and
refitted on every row, starting from its parameters. A kernel density keeps a seeded
uniform sample of at most ``max_rows`` rows and is fitted to it as the local engine would.

Parts stay in the workers' memory when the data takes less than a third of it; otherwise
each pass reads them again from the files (out of core).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np

from gencli.density.families import gmm
from gencli.density.model import DensityModel
from gencli.density.modelparts import sample_entropy
from gencli.engines import dask_tasks as tasks
from gencli.engines.dask_em import (
    Candidate,
    ClusterData,
    estimated_bytes,
    initialize,
    run_em,
)
from gencli.errors import FitError
from gencli.fitting import em_stats
from gencli.io.parts import PartPlan

INIT_ROWS = 20_000  # rows k-means sees to place the first centres
QUANTILE_ROWS = 100_000  # held-out rows whose scores give the report's quantiles
KEEP_FRACTION = 1 / 3  # of the smallest worker's memory, for keeping the parts there


def fit_on_cluster(
    client: Any,
    plan: PartPlan,
    model: str,
    *,
    say: Callable[[str], None],
    components: Any = None,
    covariance: str | None = None,
    select: str | None = None,
    max_iter: int | None = None,
    n_init: int | None = None,
    tol: float | None = None,
    reg_covar: float | None = None,
    bandwidth: Any = None,
    kernel: str | None = None,
    max_rows: int = 100_000,
    report_rows: int = 0,
    validation: float = 0.2,
    refit: bool = True,
    seed: int | None = 0,
    standardize: bool = True,
    progress: Callable[[int], None] | None = None,
    **local_options: Any,
) -> DensityModel:
    """Fit ``model`` ('gmm', 'kde' or 'auto': mixtures judged on the held-out rows) to the
    data set ``plan`` on the cluster behind ``client``; ``progress`` is told of each part
    a pass has finished (the command line's progress bar). With ``report_rows``, a seeded
    uniform sample of that many rows (data units) for a report's figures is left in the
    metadata as ``report_sample``, for the caller to take out before saving."""
    from gencli.engines.cluster import worker_count, worker_memory
    from gencli.fitting.fitter import resolve_model

    given = {"components": components, "covariance": covariance, "select": select}
    given |= {"max_iter": max_iter, "tol": tol, "reg_covar": reg_covar}
    given |= {"bandwidth": bandwidth, "kernel": kernel}
    family, settings = resolve_model(model, {k: v for k, v in given.items() if v is not None})
    if family == "auto":  # mixtures only here, judged on the held-out rows
        settings["select"] = "heldout" if validation > 0 else "bic"
    if family != "kde":
        _refuse_unsupported(settings, n_init, local_options, validation)
    started = time.perf_counter()
    seed = sample_entropy(None) % (1 << 32) if seed is None else int(seed)
    data = ClusterData(client, plan, say)
    data.progress = progress
    limit = worker_memory(client)
    estimate = estimated_bytes(plan)
    # A kernel density needs only a sample: its rows are read once more, not kept.
    keep = family != "kde" and (
        limit == 0 or estimate <= KEEP_FRACTION * limit * worker_count(client)
    )
    if family != "kde" and not keep:
        say(f"dask: the data (about {estimate / 1e9:.1f} GB) is read again on every pass")
    stats = data.moments(keep)
    n, d = int(stats["rows"]), len(plan.columns)
    _refuse_constant(stats, plan)
    summary = [
        {
            "name": c,
            "mean": float(m),
            "std": float(np.sqrt(m2 / n)),
            "min": float(lo),
            "max": float(hi),
        }
        for c, m, m2, lo, hi in zip(
            plan.columns, stats["mean"], stats["m2"], stats["min"], stats["max"], strict=True
        )
    ]
    if standardize:
        shift, scale = stats["mean"], np.sqrt(stats["m2"] / n)
    else:
        shift, scale = np.zeros(d), np.ones(d)
    if family == "kde":
        kde_options = {"bandwidth": settings["bandwidth"], "kernel": settings["kernel"]}
        kde_options |= {"validation": validation}
        kde_options |= {"refit": refit, "seed": seed, "standardize": standardize}
        result = _fit_kde_sample(data, n, seed, max_rows, say, kde_options | local_options)
        result.metadata["fit_seconds"] = time.perf_counter() - started
        result.metadata["data_summary"] = summary
        result.metadata["dropped_rows"] = int(stats["dropped"])
        if report_rows:
            result.metadata["report_sample"] = uniform_sample(data, n, seed, report_rows)
        return result
    data.prepare(shift, scale, seed, validation)
    try:
        fitted = fit_mixtures(data, settings, seed=seed, d=d, n=n, refit=refit)
    except FitError as exc:
        raise FitError(f"{plan.source}: {exc}") from None
    for key in ("train_mean", "measured_train_mean", "heldout_mean"):
        fitted[key] = None if fitted[key] is None else float(fitted[key])
    result = DensityModel(
        "gmm", fitted["params"], plan.columns, shift, scale, named_columns=plan.named
    )
    result.metadata = _metadata(data, stats, fitted, seed, standardize, validation)
    result.metadata["data_summary"] = summary
    result.metadata["dropped_rows"] = int(stats["dropped"])
    result.metadata["fit_seconds"] = time.perf_counter() - started
    if report_rows:
        result.metadata["report_sample"] = uniform_sample(data, n, seed, report_rows)
    return result


def _refuse_unsupported(
    settings: dict[str, Any], n_init: int | None, options: dict[str, Any], validation: float
) -> None:
    """What a mixture fit on the cluster does not do, refused before any work."""
    if n_init not in (None, 1):
        raise FitError("--n-init is 1 on --engine dask (one EM run per candidate); drop --n-init")
    if options.get("discrete") not in (None, "none", "warn"):
        raise FitError(
            "--discrete is not available on --engine dask yet: mixtures there treat every "
            "column as continuous; drop --discrete or use --engine local"
        )
    for name in ("bounds", "weights", "missing"):  # (fit_job refuses them first)
        if options.get(name) not in (None, (), [], ""):
            raise FitError(
                f"--{name} is not available on --engine dask yet; drop it or use --engine local"
            )
    if settings["select"] == "heldout" and validation <= 0:
        raise FitError("--select heldout needs held-out rows; use --validation 0.2 (say)")


def fit_mixtures(
    data: ClusterData, settings: dict[str, Any], *, seed: int, d: int, n: int, refit: bool
) -> dict[str, Any]:
    """Every candidate by EM, the choice, its held-out measurement and the refit."""
    from gencli.fitting.selection import information_criteria, mixture_grid

    ks, kinds = mixture_grid(settings["components"], settings["covariance"])
    candidates = [  # the local engine's order: ties go to the earlier one
        Candidate(k, c, settings["reg_covar"], settings["max_iter"], settings["tol"])
        for c in kinds
        for k in ks
    ]
    sample = data.concat(tasks.sample_rows, min(1.0, INIT_ROWS / max(n, 1)), d=d)
    if len(sample) < max(ks):
        sample = data.concat(tasks.sample_rows, 1.0, d=d)  # small data: every training row
    candidates = [c for c in candidates if c.components <= len(sample)]
    if not candidates:
        raise FitError(
            f"a {ks[0]}-component mixture needs at least {ks[0]} rows but only {len(sample)} "
            "rows are there to train on; use fewer --components"
        )
    base_reg = float(settings["reg_covar"])  # what a collapse is judged against
    initialize(data, candidates, sample, seed)
    run_em(data, candidates, every_row=False, base_reg=base_reg)
    sums = data.reduce(tasks.score_pass, [c.em.params for c in candidates], False)
    records = []
    for cand, (train_sum, train_rows, valid_sum, valid_rows) in zip(candidates, sums, strict=True):
        params_count = gmm.n_parameters(cand.components, cand.covariance, d)
        log_jac = data.log_jacobian
        total = train_sum + train_rows * log_jac
        records.append(
            {
                "components": cand.components,
                "covariance": cand.covariance,
                "parameters": params_count,
                "train_mean_log_likelihood": total / train_rows,
                **information_criteria(total, params_count, int(train_rows)),
                "heldout_mean_log_likelihood": (
                    valid_sum / valid_rows + log_jac if valid_rows else None
                ),
                "converged": bool(cand.em.converged),
                "iterations": int(cand.em.n_iter),
                "fixes": list(cand.fixes),
                "chosen": False,
            }
        )
    criterion = settings["select"]
    if criterion == "heldout" and not any(
        r["heldout_mean_log_likelihood"] is not None for r in records
    ):
        raise FitError("--select heldout needs held-out rows; use --validation 0.2 (say)")
    best = min(range(len(records)), key=lambda i: _score(records[i], criterion))
    records[best]["chosen"] = True
    chosen = candidates[best]
    measured = em_stats.as_model_params(chosen.em)
    train_rows, valid_rows = int(sums[best][1]), int(sums[best][3])
    heldout_mean = records[best]["heldout_mean_log_likelihood"]
    train_mean = records[best]["train_mean_log_likelihood"]
    quantile_scores = None
    if valid_rows:
        rate = min(1.0, QUANTILE_ROWS / valid_rows)
        quantile_scores = data.concat(tasks.heldout_scores, chosen.em.params, rate, d=1)
        quantile_scores = quantile_scores + data.log_jacobian
    final = chosen
    refitted = refit and valid_rows > 0
    if refitted:
        final = Candidate(
            chosen.components, chosen.covariance, chosen.reg_covar, chosen.max_iter, chosen.tol
        )
        final.start = chosen.em.params
        final.run = em_stats.EmRun(
            dict(chosen.em.params), final.reg_covar, final.tol, final.max_iter
        )
        run_em(data, [final], every_row=True, base_reg=base_reg)
        whole = data.reduce(tasks.score_pass, [final.em.params], True)[0]
        final_train_mean = whole[0] / whole[1] + data.log_jacobian
    else:
        final_train_mean = train_mean
    warnings = []
    params = em_stats.as_model_params(final.em)
    finite = [params["means"], params["covariances"], final_train_mean]
    if not all(np.all(np.isfinite(value)) for value in finite):
        raise FitError("the mixture fit produced non-finite parameters; try a larger --reg-covar")
    if not final.em.converged:
        warnings.append(
            f"EM did not converge in {final.max_iter} iterations even after continuing; "
            "try a larger --max-iter or --tol"
        )
    if gmm.collapsed(gmm.from_params(params), base_reg):
        warnings.append(
            "a component still sits on a few rows (its variance is the regularizer), so its "
            "density is a spike; try fewer --components or a larger --reg-covar"
        )
    return {
        "params": params,
        "measured_params": measured,
        "selection": (
            {"criterion": criterion, "parameter": "components", "candidates": records}
            if len(records) > 1
            else None
        ),
        # As the local engine: the chosen fit's repairs (the others' are in their rows).
        "fixes": chosen.fixes + (final.fixes if refitted else []),
        "warnings": warnings,
        "train_mean": final_train_mean,
        "train_rows": int(whole[1]) if refitted else train_rows,
        "measured_train_mean": train_mean,
        "measured_train_rows": train_rows,
        "heldout_mean": heldout_mean,
        "heldout_rows": valid_rows,
        "heldout_scores": quantile_scores,
        "refitted": refitted,
        "rows": n,
    }


def _score(record: dict[str, Any], criterion: str) -> float:
    if criterion == "heldout":
        value = record["heldout_mean_log_likelihood"]
        return -value if value is not None else math.inf
    return float(record[criterion])


def _refuse_constant(stats: dict[str, Any], plan: PartPlan) -> None:
    if stats["rows"] < 2:
        raise FitError(f"{plan.source}: has {stats['rows']} row; a density needs at least 2 rows")
    flat = [
        j for j, (lo, hi) in enumerate(zip(stats["min"], stats["max"], strict=True)) if lo == hi
    ]
    if flat:
        name, value = plan.columns[flat[0]], stats["min"][flat[0]]
        raise FitError(
            f"{plan.source}: column '{name}' is constant (every value is {value:g}), so a "
            "density over it would be an infinitely narrow spike; leave it out with --columns"
        )


def _fit_kde_sample(
    data: ClusterData,
    n: int,
    seed: int,
    max_rows: int,
    say: Callable[[str], None],
    options: dict[str, Any],
) -> DensityModel:
    """A kernel density on a seeded uniform sample of at most ``max_rows`` rows: the rows
    with the ``max_rows`` smallest hash values, the same however the data is cut."""
    from gencli.fitting.fitter import fit
    from gencli.io.table import Table

    plan = data.plan
    rows = uniform_sample(data, n, seed, max_rows)
    if len(rows) < n:
        say(
            f"dask: the kernel density keeps {len(rows):,} of {n:,} rows (a seeded uniform "
            "sample; raise --max-rows for more)"
        )
    table = Table(rows, list(plan.columns), plan.named, plan.source)
    model = fit(
        table, "kde", overwrite_data=True, **{k: v for k, v in options.items() if v is not None}
    )
    model.metadata["rows"] = n
    model.metadata["kde_sample"] = {"rows_kept": len(rows), "rows": n, "max_rows": max_rows}
    model.metadata["engine"] = _engine_record(data)
    return model


def uniform_sample(data: ClusterData, n: int, seed: int, max_rows: int) -> np.ndarray:
    """A seeded uniform sample of ``min(max_rows, n)`` of the data set's rows (data units,
    file order): the rows with the smallest hash values, the same however the data is cut."""
    plan, client = data.plan, data.client
    rate = min(1.0, 1.2 * max_rows / max(n, 1) + 1e-9)
    while True:  # the draw is random in size: draw again, wider, if it came up short
        futures = [
            client.submit(tasks.raw_sample, plan, i, offset, seed, rate, pure=False)
            for i, offset in enumerate(data.offsets())
        ]
        pieces = client.gather(futures)
        keys = np.concatenate([p[0] for p in pieces])
        rows = np.concatenate([p[1] for p in pieces])
        if len(keys) >= min(max_rows, n) or rate >= 1.0:
            break
        rate = min(1.0, 2.0 * rate)
    if len(keys) > max_rows:
        rows = rows[np.sort(np.argsort(keys, kind="stable")[:max_rows])]  # file order kept
    return rows


def _engine_record(data: ClusterData) -> dict[str, Any]:
    from gencli.engines.cluster import worker_count

    return {
        "name": "dask",
        "workers": worker_count(data.client),
        "partitions": len(data.plan.parts),
        "kept_in_memory": bool(data.sources) and not isinstance(data.sources[0], tasks.Split),
        "em_passes": len(data.em_passes),
        "em_pass_seconds": float(np.median(data.em_passes)) if data.em_passes else None,
    }


def _metadata(
    data: ClusterData,
    stats: dict[str, Any],
    fitted: dict[str, Any],
    seed: int,
    standardize: bool,
    validation: float,
) -> dict[str, Any]:
    """The local engine's metadata (:func:`gencli.fitting.fitter.fit`), from sums."""
    from gencli._version import __version__
    from gencli.audience import recorded_command
    from gencli.fitting.fit_rules import sklearn_version

    d = len(data.plan.columns)
    bits = 1.0 / (d * math.log(2.0))
    validation_record = None
    quantiles = None
    if fitted["heldout_rows"]:
        validation_record = {
            "fraction": float(validation),
            "train_rows": fitted["measured_train_rows"],
            "heldout_rows": fitted["heldout_rows"],
            "refit": fitted["refitted"],
            "train_mean_log_likelihood": fitted["measured_train_mean"],
            "train_bits_per_dimension": -fitted["measured_train_mean"] * bits,
            "heldout_mean_log_likelihood": fitted["heldout_mean"],
            "heldout_bits_per_dimension": -fitted["heldout_mean"] * bits,
        }
        scores = fitted["heldout_scores"]
        finite = scores[np.isfinite(scores)]
        if finite.size:
            from gencli.fitting.fitter import QUANTILE_LEVELS

            quantiles = {
                "levels": QUANTILE_LEVELS.copy(),
                "values": np.quantile(finite, QUANTILE_LEVELS),
            }
    return {
        "gencli_version": __version__,
        "sklearn_version": sklearn_version(),
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
        "source": data.plan.source,
        "rows": int(stats["rows"]),
        "data_sha256": stats["sha256"],
        "command_line": recorded_command(
            lambda: f"gencli.jobs.fit_file({data.plan.source!r}, engine='dask', ...)"
        ),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "standardized": standardize,
        "discrete_columns": [],
        "train_mean_log_likelihood": fitted["train_mean"],
        "train_bits_per_dimension": -fitted["train_mean"] * bits,
        "train_estimate": None,
        "validation": validation_record,
        "selection": fitted["selection"],
        "fixes": fitted["fixes"],
        "warnings": fitted["warnings"],
        "heldout_log_density_quantiles": quantiles,
        "engine": _engine_record(data),
    }
