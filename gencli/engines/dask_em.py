"""The cluster side of a mixture fit: the data set on the workers, and EM over it.

:class:`ClusterData` holds where each part's rows live (in the workers' memory, or read
again from the files on every pass) and runs a function on every part, summing the results
in a tree of tasks. :func:`run_em` advances every candidate mixture by one pass over the
data per iteration (all candidates share the pass), with the local engine's repairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gencli.density.families import gmm
from gencli.engines import dask_tasks as tasks
from gencli.errors import FitError
from gencli.fitting import em_stats
from gencli.io.parts import PartPlan

FAN_IN = 8  # parts' results summed by one task


@dataclass
class Candidate:
    """One mixture being fitted: its settings, its EM, and the repairs made to it."""

    components: int
    covariance: str
    reg_covar: float
    max_iter: int
    tol: float
    run: em_stats.EmRun | None = None
    start: dict[str, Any] | None = None
    initial: tuple[em_stats.Statistics, np.ndarray] | None = None  # k-means' assignment
    fixes: list[str] = field(default_factory=list)
    retried_collapse: bool = False
    extended: bool = False

    @property
    def em(self) -> em_stats.EmRun:
        """The EM run, once :func:`initialize` has made it."""
        if self.run is None:
            raise AssertionError(f"{self.label} has not been initialized")
        return self.run

    @property
    def label(self) -> str:
        return f"K={self.components} {self.covariance}"


class ClusterData:
    """The data set on the cluster: its parts, their offsets, and where their rows live."""

    def __init__(self, client: Any, plan: PartPlan, say: Callable[[str], None]) -> None:
        self.client, self.plan, self.say = client, plan, say
        self.raw: list[Any] = []
        self.sources: list[Any] = []
        self.splits: list[tasks.Split] = []
        self.em_passes: list[float] = []  # seconds of each EM pass over every part
        self.progress: Callable[[int], None] | None = None  # told of every part done

    def moments(self, keep: bool) -> dict[str, Any]:
        """One pass: each part's moments (and, with ``keep``, its rows left on the workers)."""
        client, n = self.client, len(self.plan.parts)
        if keep:
            self.raw = [
                client.submit(tasks.read, self.plan, i, pure=False, **placement)
                for i, placement in enumerate(self._placements())
            ]
            futures = [client.submit(tasks.moments, r) for r in self.raw]
        else:
            futures = [client.submit(_read_moments, self.plan, i, pure=False) for i in range(n)]
        parts = client.gather(futures)
        self.counts = [p["rows"] for p in parts]
        return tasks.combine_moments(parts)

    def _placements(self) -> list[dict[str, Any]]:
        """Where each part's rows are kept: on the worker holding the fewest rows so far
        (known from Parquet footers; a part of unknown size counts as a million rows).

        Every later pass runs where the rows are, so this placement is the passes' balance:
        left to the scheduler, 8 parts on 2 workers could settle 5 and 3, and an EM pass on
        2 workers then takes 5/8 of the time on 1 instead of 4/8. A worker that goes away
        is no tie: the other workers may take its parts (loose restrictions)."""
        from gencli.engines.cluster import workers_of

        workers = sorted(workers_of(self.client))
        if len(workers) < 2:
            return [{} for _ in self.plan.parts]
        held = dict.fromkeys(workers, 0)
        out = []
        for part in self.plan.parts:
            target = min(workers, key=lambda address: held[address])
            held[target] += part.rows if part.rows is not None else 1_000_000
            out.append({"workers": [target], "allow_other_workers": True})
        return out

    def prepare(self, shift: np.ndarray, scale: np.ndarray, seed: int, validation: float) -> None:
        self.log_jacobian = -float(np.sum(np.log(scale)))
        offsets = self.offsets()
        self.splits = [
            tasks.Split(self.plan, i, int(o), shift, scale, seed, validation)
            for i, o in enumerate(offsets)
        ]
        if self.raw:
            self.sources = [
                self.client.submit(tasks.split, r, s)
                for r, s in zip(self.raw, self.splits, strict=True)
            ]
            self.raw = []  # the raw rows are dropped once split
        else:
            self.sources = list(self.splits)

    def offsets(self) -> list[int]:
        return [int(o) for o in np.concatenate([[0], np.cumsum(self.counts)[:-1]])]

    def reduce(self, function: Callable[..., list[Any]], *args: Any) -> list[Any]:
        """``function(source, *args)`` on every part, summed element-wise in a tree."""
        client = self.client
        started = time.perf_counter()
        level = [client.submit(function, s, *args, pure=False) for s in self.sources]
        if self.progress is not None:
            advance = self.progress
            for future in level:
                future.add_done_callback(lambda _future: advance(1))
        while len(level) > 1:
            level = [
                client.submit(tasks.add, *level[i : i + FAN_IN], pure=False)
                for i in range(0, len(level), FAN_IN)
            ]
        result: list[Any] = client.gather(level[0])
        if function is tasks.em_pass:  # the EM iterations' wall time, for the record
            self.em_passes.append(time.perf_counter() - started)
        return result

    def concat(self, function: Callable[..., np.ndarray], *args: Any, d: int) -> np.ndarray:
        """``function(source, split, *args)`` on every part, stacked in part order."""
        futures = [
            self.client.submit(function, s, how, *args, pure=False)
            for s, how in zip(self.sources, self.splits, strict=True)
        ]
        pieces = [np.asarray(p) for p in self.client.gather(futures)]
        return np.concatenate(pieces) if pieces else np.zeros((0, d))


def _read_moments(plan: PartPlan, index: int) -> dict[str, Any]:
    return tasks.moments(tasks.read(plan, index))


def initialize(
    data: ClusterData, candidates: list[Candidate], sample: np.ndarray, seed: int
) -> None:
    """k-means centres from the sample, then one pass giving each training row to its
    nearest centre: scikit-learn's k-means initialization, on every row."""
    from sklearn.cluster import KMeans

    centres = []
    for cand in candidates:
        km = KMeans(cand.components, n_init=1, random_state=seed).fit(sample)
        centres.append(km.cluster_centers_)
    kinds = [c.covariance for c in candidates]
    stats = data.reduce(tasks.hard_pass, centres, kinds)
    for cand, stat, centre in zip(candidates, stats, centres, strict=True):
        cand.initial = (stat, centre)
        _restart(cand)


def _restart(cand: Candidate) -> None:
    """A fresh run from the initialization, with the candidate's current ``reg_covar``
    (scikit-learn, refitting with a larger one, initializes with it too); a warm-started
    candidate (the refit) starts from its given parameters."""
    if cand.initial is not None:
        stat, centre = cand.initial
        while True:
            try:
                cand.start = em_stats.m_step(stat, centre, cand.covariance, cand.reg_covar)
                break
            except em_stats.SingularCovariance:
                _raise_reg(cand, "a covariance was singular")
    assert cand.start is not None
    cand.run = em_stats.EmRun(dict(cand.start), cand.reg_covar, cand.tol, cand.max_iter)


def _raise_reg(cand: Candidate, why: str, factor: float = 10.0, floor: float = 1e-6) -> None:
    new_reg = max(cand.reg_covar * factor, floor)
    if new_reg > 1.0:
        raise FitError(
            f"the mixture ({cand.label}) could not be fitted even with reg_covar="
            f"{cand.reg_covar:g}; use fewer --components"
        )
    cand.fixes.append(
        f"{cand.label}: {why} with reg_covar={cand.reg_covar:g}; "
        f"refitted with reg_covar={new_reg:g}"
    )
    cand.reg_covar = new_reg


def run_em(
    data: ClusterData, candidates: list[Candidate], every_row: bool, base_reg: float
) -> None:
    """EM passes until every candidate has converged (or hit its iteration cap), with the
    local engine's repairs: a singular covariance restarts with a 10x larger ``reg_covar``,
    a collapsed component (judged against ``base_reg``, the user's regularizer) once with a
    1000x larger one (at least 1e-3), and EM that has not converged goes on for 5x as many
    iterations."""
    while True:
        active = [c for c in candidates if not c.em.done]
        if not active:
            restarted = [c for c in candidates if _repair_after(c, base_reg)]
            if not restarted:
                return
            continue
        params = data.client.scatter([c.em.params for c in active], broadcast=True)
        stats = data.reduce(tasks.em_pass, params, every_row)
        for cand, stat in zip(active, stats, strict=True):
            try:
                cand.em.step(stat)
            except em_stats.SingularCovariance:
                _raise_reg(cand, "a covariance was singular")
                _restart(cand)


def _repair_after(cand: Candidate, base_reg: float) -> bool:
    """Restart or extend a finished run that needs it; True if it runs again."""
    run = cand.em
    estimator = gmm.from_params(em_stats.as_model_params(run))
    if not cand.retried_collapse and gmm.collapsed(estimator, base_reg):
        cand.retried_collapse = True
        _raise_reg(
            cand,
            "a component collapsed onto a few rows (variance at the regularizer)",
            1000.0,
            1e-3,
        )
        _restart(cand)
        return True
    if not run.converged and not cand.extended:
        cand.extended = True
        cand.fixes.append(
            f"{cand.label}: EM had not converged after {run.max_iter} iterations; "
            f"went on to max_iter={run.max_iter * 5}"
        )
        run.max_iter *= 5
        cand.max_iter = run.max_iter
        return True
    return False


def estimated_bytes(plan: PartPlan) -> float:
    """About how many bytes the rows take as float64 (file sizes where rows are unknown)."""
    import os

    total = 0.0
    for part in plan.parts:
        if part.rows is not None:
            total += part.rows * len(plan.columns) * 8.0
        else:
            total += os.path.getsize(part.path)
    return total
