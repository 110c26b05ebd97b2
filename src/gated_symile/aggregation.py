"""Collect every run's ``metrics.json`` into summary tables (mean ± standard error per cell).

Runs are found by their path, the layout the workflow writes:
``RUNS/{dataset}/{method}/p{p}/seed{seed}/metrics.json`` or, for UKB-style participant folds,
``RUNS/{dataset}/{method}/p{p}/fold{k}/seed{seed}/metrics.json``. A cell is one (dataset, method,
p). Without folds the estimate is the mean over seeds ± SE (sd with ddof 1 / sqrt(n), 0 for one
run); with folds it is the mean over seeds within each fold, then mean ± SE over folds (the
reporting of [ref-G], docs/method.md §11). ``n_runs`` always counts metrics files.

A run whose top-1 is null (no eligible query) is not averaged but listed with the reason in
``excluded_runs.csv``; an unreadable JSON stops the aggregation with the file named. Everything is
sorted (dataset, method in the order clip, symile, gated_symile, then ablations, p) and written
with fixed float formatting, so the outputs are byte-identical for the same runs.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gated_symile.errors import GatedSymileError, RecordError
from gated_symile.intermediates import read_json, read_yaml
from gated_symile.outputs import atomic_path

METRICS_FILE = "metrics.json"
BASE_METHODS: tuple[str, ...] = ("clip", "symile", "gated_symile")
SUMMARY_COLUMNS: tuple[str, ...] = ("dataset", "method", "p", "top1_mean", "top1_se", "n_runs")
GATE_COLUMNS: tuple[str, ...] = ("dataset", "method", "p", "group", "statistic", "mean", "se", "n_runs")
_P_DIR = re.compile(r"^p(\d+(?:\.\d+)?)$")
_SEED_DIR = re.compile(r"^seed(\d+)$")
_FOLD_DIR = re.compile(r"^fold(\d+)$")
_SCALE_SUFFIX = re.compile(r"-(?:bs|batch|pool|k|n)\d+$")


@dataclass(frozen=True)
class Run:
    """One evaluated run, located by its path."""

    dataset: str
    method: str
    p: float
    seed: int
    fold: int | None
    path: Path
    metrics: dict[str, Any]

    @property
    def top1(self) -> float | None:
        return self.metrics.get("metrics", {}).get("top1")


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float
    n_runs: int


def method_key(method: str) -> tuple[int, bool, str]:
    """clip, symile, gated_symile first; an ablation ``<base>-<variant>`` right after its base."""
    base = method.split("-")[0]
    rank = BASE_METHODS.index(base) if base in BASE_METHODS else len(BASE_METHODS)
    return rank, method != base, method


def cell_key(run: Run) -> tuple[Any, ...]:
    return run.dataset, method_key(run.method), run.p


def discover_runs(root: Path) -> tuple[list[Run], list[tuple[str, str]]]:
    """All runs under ``root`` (sorted) and the excluded ones as (path, reason)."""
    root = Path(root)
    if not root.is_dir():
        raise GatedSymileError(f"{root}: runs folder not found")
    runs, excluded = [], []
    files = sorted(root.glob(f"*/*/p*/seed*/{METRICS_FILE}")) + sorted(root.glob(f"*/*/p*/fold*/seed*/{METRICS_FILE}"))
    for file in files:
        parts = file.relative_to(root).parts[:-1]
        dataset, method, p_dir, *rest = parts
        p_match, seed_match = _P_DIR.match(p_dir), _SEED_DIR.match(rest[-1])
        fold_match = _FOLD_DIR.match(rest[0]) if len(rest) == 2 else None
        if p_match is None or seed_match is None or (len(rest) == 2 and fold_match is None):
            continue  # not a run folder of the layout (say p_old/seed0): not ours to read
        metrics = read_metrics(file)
        run = Run(dataset, method, float(p_match.group(1)), int(seed_match.group(1)),
                  int(fold_match.group(1)) if fold_match else None, file, metrics)
        if run.top1 is None:
            excluded.append((str(file.relative_to(root)), "top1 is null (no eligible query)"))
            continue
        runs.append(run)
    runs.sort(key=lambda r: (*cell_key(r), -1 if r.fold is None else r.fold, r.seed))
    return runs, excluded


def read_metrics(file: Path) -> dict[str, Any]:
    """An evaluate-stage metrics JSON with the fields the tables use, of the right types."""
    metrics = read_json(file, "metrics JSON", keys=("metrics",))
    if not isinstance(metrics["metrics"], dict):
        raise RecordError(file, "no 'metrics' object: not an evaluate-stage metrics JSON")
    top1 = metrics["metrics"].get("top1")
    if top1 is not None and not (_is_number(top1) and 0.0 <= top1 <= 1.0):
        raise RecordError(file, f"metrics.top1 must be a number in [0, 1] or null, got {top1!r}")
    shape_error = RecordError(file, "gate_diagnostics or pool_size is not an object of numbers (or nulls)")
    gates = metrics.get("gate_diagnostics") or {}
    by_group = (gates.get("by_corr_mod") or {}) if isinstance(gates, dict) else None
    if not isinstance(by_group, dict) or not isinstance(metrics.get("pool_size") or {}, dict):
        raise shape_error
    groups = [gates.get("overall") or {}, *by_group.values()]
    if not all(isinstance(g, dict) for g in groups):
        raise shape_error
    if not all(v is None or _is_number(v) for v in [gates.get("alpha"), *(v for g in groups for v in g.values())]):
        raise shape_error
    return metrics


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error sd(ddof=1)/sqrt(n); the SE of a single value is 0."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_se of no values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def estimate(entries: Iterable[tuple[int | None, float]]) -> Estimate:
    """Cell estimate from (fold, value) pairs: over seeds, or over fold means when folds exist."""
    entries = list(entries)
    folds = {fold for fold, _ in entries}
    if None in folds and len(folds) > 1:
        raise GatedSymileError("a cell mixes runs with and without folds")
    if None in folds:
        mean, se = mean_se([v for _, v in entries])
    else:
        by_fold: dict[int, list[float]] = defaultdict(list)
        for fold, value in entries:
            by_fold[fold].append(value)
        mean, se = mean_se([math.fsum(v) / len(v) for _, v in sorted(by_fold.items())])
    return Estimate(mean, se, len(entries))


def group_cells(runs: Sequence[Run]) -> dict[tuple[str, str, float], list[Run]]:
    cells: dict[tuple[str, str, float], list[Run]] = {}
    for run in runs:
        cells.setdefault((run.dataset, run.method, run.p), []).append(run)
    return cells


def summary_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per (dataset, method, p): top-1 mean, SE and number of runs."""
    rows = []
    for (dataset, method, p), cell in group_cells(runs).items():
        est = estimate((r.fold, float(r.top1)) for r in cell)
        rows.append({"dataset": dataset, "method": method, "p": p,
                     "top1_mean": est.mean, "top1_se": est.se, "n_runs": est.n_runs})
    return rows


def gate_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Per gated cell, group (overall or corruption type) and gate statistic: mean ± SE over runs.

    Statistics: the mean gate weight of each query modality (``w_<m>``), their pairwise
    differences (``w_<u>-w_<v>``), the NULL probability and the gate strength α (overall only).
    A run whose group is empty (null values) does not count for that row.
    """
    rows = []
    for (dataset, method, p), cell in group_cells(runs).items():
        values: dict[tuple[str, str], list[tuple[int | None, float]]] = defaultdict(list)
        for run in cell:
            gates = run.metrics.get("gate_diagnostics")
            if not gates:
                continue
            if gates.get("alpha") is not None:
                values[("overall", "alpha")].append((run.fold, float(gates["alpha"])))
            groups = {"overall": gates.get("overall") or {}, **(gates.get("by_corr_mod") or {})}
            for group, stats in groups.items():
                for stat, value in stats.items():
                    if (stat.startswith("w_") or stat == "p_null") and value is not None:
                        values[(group, stat)].append((run.fold, float(value)))
        for (group, stat), entries in sorted(values.items(), key=lambda kv: (_group_key(kv[0][0]), kv[0][1])):
            est = estimate(entries)
            rows.append({"dataset": dataset, "method": method, "p": p, "group": group, "statistic": stat,
                         "mean": est.mean, "se": est.se, "n_runs": est.n_runs})
    return rows


def _group_key(group: str) -> tuple[int, str]:
    order = {"overall": 0, "clean": 1, "several_corrupted": 3}
    return order.get(group, 2), group


def scale_points(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Top-1 per run with its contrastive scale: evaluation pool size and training batch size.

    The batch size comes from the run's ``resolved_config.yaml`` when present. Runs that differ
    only in scale are named ``<method>-bs<N>`` (or ``-pool<N>``…); the suffix is stripped so that
    they form one line (``family``).
    """
    points = []
    for run in runs:
        batch = None
        config = run.path.parent / "resolved_config.yaml"
        if config.exists():
            train = read_yaml(config, "resolved run config", whole=True).get("train")
            batch = train.get("batch_size") if isinstance(train, dict) else None
            if not isinstance(batch, int):
                raise RecordError(config, "train.batch_size (an integer) is missing")
        pool = (run.metrics.get("pool_size") or {}).get("mean")
        points.append({"dataset": run.dataset, "family": _SCALE_SUFFIX.sub("", run.method), "p": run.p,
                       "fold": run.fold, "pool": pool, "batch": batch, "top1": float(run.top1)})
    return points


def fmt(value: Any) -> str:
    """CSV cell: floats with 6 decimals (p with its shortest repr), everything else as str."""
    if isinstance(value, float):
        return f"{value:.6f}"
    return "" if value is None else str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([repr(row[c]) if c == "p" else fmt(row[c]) for c in columns])


def wide_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """``top1_by_p``: one row per (dataset, method), ``p<p>_mean``/``p<p>_se`` columns."""
    ps = sorted({r["p"] for r in rows})
    columns = ["dataset", "method", *(f"p{p!r}_{k}" for p in ps for k in ("mean", "se"))]
    wide: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        entry = wide.setdefault((r["dataset"], r["method"]), {c: None for c in columns})
        entry.update({"dataset": r["dataset"], "method": r["method"],
                      f"p{r['p']!r}_mean": r["top1_mean"], f"p{r['p']!r}_se": r["top1_se"]})
    return columns, list(wide.values())


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows dataset × p, methods as columns, cells ``0.912 ± 0.004`` (``–`` where no run)."""
    methods = sorted({r["method"] for r in rows}, key=method_key)
    cells = {(r["dataset"], r["p"], r["method"]): r for r in rows}
    lines = ["| dataset | p | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for dataset, p in sorted({(r["dataset"], r["p"]) for r in rows}):
        entries = []
        for m in methods:
            r = cells.get((dataset, p, m))
            entries.append(f"{r['top1_mean']:.3f} ± {r['top1_se']:.3f}" if r else "–")
        lines.append(f"| {dataset} | {p!r} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"
