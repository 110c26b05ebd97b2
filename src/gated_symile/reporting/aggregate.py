"""Collect the given runs' ``metrics.json`` into summary tables (mean ± standard error per cell).

Exactly the metrics files the caller names are read, never a folder listing: a run left on disk
from an earlier grid (a seed, p or method since removed from the config) must not enter the
tables. Each file's (dataset, method, p, fold, seed) comes from its path, the layout the workflow
writes: ``.../{dataset}/{method}/p{p}/seed{seed}/metrics.json`` or, for UKB-style participant
folds, ``.../{dataset}/{method}/p{p}/fold{k}/seed{seed}/metrics.json``; the run's per-query ranks
(:mod:`gated_symile.evaluation.query_ranks`), when given, sit in the same folder. A cell is one (dataset,
method, p). Without folds the estimate is the mean over seeds ± SE (sd with ddof 1 / sqrt(n));
with several folds it is the mean over seeds within each fold, then mean ± SE over folds (the
reporting of [ref-G], docs/method.md §11); with one fold, mean ± SE over its seeds. The SE of a single value is undefined: ``None``, an empty CSV cell, "NA"
in markdown. ``n_runs`` always counts metrics files.

Yardsticks per row: ``chance`` (mean over the cell's runs of the expected top-1 of a random scorer,
1 / pool size) and, from the optional oracle files ``.../{dataset}/p{p}.json``, ``oracle_top1``
and ``pairwise_oracle_top1`` (empty without one).

A run whose top-1 is null (no eligible query) is not averaged but listed with the reason in
``excluded_runs.csv``; an unreadable JSON stops the aggregation with the file named. Everything is
sorted (dataset, method in the order clip, symile, gated_symile, then ablations, p) and written
with fixed float formatting, so the outputs are byte-identical for the same runs.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.errors import GatedSymileError, RecordError
from gated_symile.intermediates import read_json
from gated_symile.layout import parse_run_dir
from gated_symile.outputs import atomic_path

if TYPE_CHECKING:
    from gated_symile.evaluation.retrieval import QueryRanks

METRICS_FILE = "metrics.json"
BASE_METHODS: tuple[str, ...] = ("clip", "symile", "gated_symile")
ORACLE_COLUMNS: tuple[str, ...] = ("oracle_top1", "pairwise_oracle_top1")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "dataset", "method", "p", "top1_mean", "top1_se", "n_runs", "chance", *ORACLE_COLUMNS,
)
_RUN_LAYOUT = "{dataset}/{method}/p{p}/[fold{k}/]seed{seed}/metrics.json"
_ORACLE_KEYS: tuple[str, ...] = (*ORACLE_COLUMNS, "oracle_top1_se", "pairwise_oracle_top1_se", "chance")
GATE_COLUMNS: tuple[str, ...] = ("dataset", "method", "p", "group", "statistic", "mean", "se", "n_runs")
_P_DIR = re.compile(r"^p(\d+(?:\.\d+)?)$")
_SCALE_SUFFIX = re.compile(r"-(?:bs|batch|pool|k|n)\d+$")


@dataclass(frozen=True)
class Run:
    """One evaluated run, located by its path; ``ranks`` when its per-query file was given."""

    dataset: str
    method: str
    p: float
    seed: int
    fold: int | None
    path: Path
    metrics: dict[str, Any]
    ranks: QueryRanks | None = None
    ranks_path: Path | None = None

    @property
    def top1(self) -> float | None:
        return self.metrics.get("metrics", {}).get("top1")

    @property
    def chance(self) -> float | None:
        return self.metrics.get("metrics", {}).get("chance")


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float | None
    n_runs: int


def method_key(method: str) -> tuple[int, bool, str]:
    """clip, symile, gated_symile first; an ablation ``<base>-<variant>`` right after its base."""
    base = method.split("-")[0]
    rank = BASE_METHODS.index(base) if base in BASE_METHODS else len(BASE_METHODS)
    return rank, method != base, method


def cell_key(run: Run) -> tuple[Any, ...]:
    return run.dataset, method_key(run.method), run.p


def parse_run_path(file: Path) -> tuple[str, str, float, int | None, int]:
    """(dataset, method, p, fold or None, seed) of a metrics file from its path
    (:mod:`gated_symile.layout`)."""
    try:
        if Path(file).name != METRICS_FILE:
            raise ValueError(file)
        dataset, method, p, fold, seed = parse_run_dir(Path(file).parent)
    except ValueError:
        raise GatedSymileError(f"{file}: not a run's metrics file (expected .../{_RUN_LAYOUT})") from None
    return dataset, method, float(p), fold, seed


def load_runs(
    metrics_files: Sequence[Path], ranks_files: Sequence[Path] = ()
) -> tuple[list[Run], list[tuple[str, str]]]:
    """The given runs (sorted) and the excluded ones as (path, reason).

    Each ranks file must sit in the folder of a given metrics file and agree with it (number of
    queries, top-1); a run given twice, a path off the layout or unreadable JSON is an error.
    """
    from gated_symile.evaluation.query_ranks import read_query_ranks

    ranks_by_dir = {Path(f).parent: Path(f) for f in ranks_files}
    runs, excluded, seen = [], [], {}
    for file in map(Path, metrics_files):
        key = parse_run_path(file)
        if key in seen:
            raise GatedSymileError(f"{file}: the same run as {seen[key]} (dataset, method, p, fold, seed)")
        seen[key] = file
        dataset, method, p, fold, seed = key
        metrics = _read_metrics(file)
        ranks_path = ranks_by_dir.pop(file.parent, None)
        if metrics["metrics"].get("top1") is None:
            excluded.append((str(file), "top1 is null (no eligible query)"))
            continue
        ranks = None if ranks_path is None else read_query_ranks(ranks_path)
        run = Run(dataset, method, p, seed, fold, file, metrics, ranks, ranks_path)
        if ranks is not None:
            _check_ranks(run)
        runs.append(run)
    if ranks_by_dir:
        orphan = min(ranks_by_dir.values())
        raise GatedSymileError(f"{orphan}: per-query ranks without a metrics file given in the same folder")
    runs.sort(key=lambda r: (*cell_key(r), -1 if r.fold is None else r.fold, r.seed))
    return runs, excluded


def _read_metrics(file: Path) -> dict[str, Any]:
    """An evaluate-stage metrics JSON with the fields the tables use, of the right types."""
    metrics = read_json(file, "metrics JSON", keys=("metrics",))
    if not isinstance(metrics["metrics"], dict):
        raise RecordError(file, "no 'metrics' object: not an evaluate-stage metrics JSON")
    bad = [k for k in ("top1", "chance") if not _is_number_or_null(metrics["metrics"].get(k))]
    if bad:
        raise RecordError(file, f"metrics.{bad[0]} is neither a finite number nor null")
    top1 = metrics["metrics"].get("top1")
    if top1 is not None and not 0.0 <= top1 <= 1.0:
        raise RecordError(file, f"metrics.top1 must be a number in [0, 1] or null, got {top1!r}")
    _check_gate_shape(file, metrics)
    return metrics


def _check_gate_shape(file: Path, metrics: dict[str, Any]) -> None:
    """gate_diagnostics and pool_size must be objects of numbers (or nulls) for the tables."""
    shape_error = RecordError(file, "gate_diagnostics or pool_size is not an object of numbers (or nulls)")
    gates = metrics.get("gate_diagnostics") or {}
    by_group = (gates.get("by_corr_mod") or {}) if isinstance(gates, dict) else None
    if not isinstance(by_group, dict) or not isinstance(metrics.get("pool_size") or {}, dict):
        raise shape_error
    groups = [gates.get("overall") or {}, *by_group.values()]
    if not all(isinstance(g, dict) for g in groups):
        raise shape_error
    if not all(_is_number_or_null(v) for v in [gates.get("alpha"), *(v for g in groups for v in g.values())]):
        raise shape_error


def _check_ranks(run: Run) -> None:
    """A ranks file from another evaluation than its metrics.json (say a half rerun) is refused."""
    ranks = run.ranks.ranks
    n_queries, top1 = run.metrics.get("n_queries"), float(run.top1)
    if ranks.size != n_queries or not math.isclose(float(np.mean(ranks == 1)), top1, abs_tol=1e-9):
        raise RecordError(run.ranks_path, f"{ranks.size} queries, top-1 {np.mean(ranks == 1):.6f}, but "
                          f"{run.path} says {n_queries} queries, top-1 {top1:.6f}: not the same evaluation")


def read_oracles(files: Sequence[Path]) -> dict[tuple[str, float], dict[str, float | None]]:
    """Oracle yardsticks by (dataset, p) from ``.../{dataset}/p{p}.json`` files."""
    oracles: dict[tuple[str, float], dict[str, float | None]] = {}
    for file in map(Path, files):
        p = _P_DIR.match(file.stem)
        if p is None or file.suffix != ".json" or len(file.parts) < 2:
            raise GatedSymileError(f"{file}: not an oracle file (expected .../{{dataset}}/p{{p}}.json)")
        try:
            doc = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise RecordError(file, f"cannot read oracle JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise RecordError(file, "not a JSON object")
        bad = [k for k in _ORACLE_KEYS if k not in doc or not _is_number_or_null(doc[k])]
        if bad:
            raise RecordError(file, f"missing or non-numeric {', '.join(bad)}")
        key = (file.parent.name, float(p.group(1)))
        if key in oracles:
            raise GatedSymileError(f"{file}: a second oracle file for {key[0]} p={key[1]!r}")
        oracles[key] = {k: None if doc[k] is None else float(doc[k]) for k in _ORACLE_KEYS}
    return oracles


def _is_number_or_null(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error sd(ddof=1)/sqrt(n); the SE of a single value is undefined (None)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_se of no values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def estimate(entries: Iterable[tuple[int | None, float]]) -> Estimate:
    """Cell estimate from (fold, value) pairs: over seeds, or over fold means when folds exist."""
    entries = list(entries)
    folds = {fold for fold, _ in entries}
    if None in folds and len(folds) > 1:
        raise GatedSymileError("a cell mixes runs with and without folds")
    if None in folds or len(folds) == 1:
        # One fold (or none): the seeds are the only replicates, so their spread is the SE.
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


def summary_rows(
    runs: Sequence[Run], oracles: dict[tuple[str, float], dict[str, float | None]] | None = None
) -> list[dict[str, Any]]:
    """One row per (dataset, method, p): top-1 mean, SE, number of runs, chance and oracles."""
    rows = []
    for (dataset, method, p), cell in group_cells(runs).items():
        est = estimate((r.fold, float(r.top1)) for r in cell)
        chances = [float(r.chance) for r in cell if r.chance is not None]
        oracle = (oracles or {}).get((dataset, p), {})
        rows.append({"dataset": dataset, "method": method, "p": p,
                     "top1_mean": est.mean, "top1_se": est.se, "n_runs": est.n_runs,
                     "chance": math.fsum(chances) / len(chances) if chances else None,
                     **{c: oracle.get(c) for c in ORACLE_COLUMNS}})
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

    Both come from the metrics file (``train_batch_size``, absent in files written before it was
    recorded). Runs that differ only in scale are named ``<method>-bs<N>`` (or ``-pool<N>``…); the
    suffix is stripped so that they form one line (``family``).
    """
    points = []
    for run in runs:
        batch = run.metrics.get("train_batch_size")
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
    """Rows dataset × p: chance, oracles, then methods, cells ``0.912 ± 0.004`` (``–`` where no run).

    A single run's SE is undefined and shows as ``NA``.
    """
    methods = sorted({r["method"] for r in rows}, key=method_key)
    cells = {(r["dataset"], r["p"], r["method"]): r for r in rows}
    yardsticks = ("chance", *ORACLE_COLUMNS)
    lines = ["| dataset | p | chance | oracle | pairwise oracle | " + " | ".join(methods) + " |",
             "|---|---|---|---|---|" + "---|" * len(methods)]
    for dataset, p in sorted({(r["dataset"], r["p"]) for r in rows}):
        cell_rows = [cells[(dataset, p, m)] for m in methods if (dataset, p, m) in cells]
        entries = [_number(cell_rows[0][y]) for y in yardsticks]
        for m in methods:
            r = cells.get((dataset, p, m))
            entries.append(f"{r['top1_mean']:.3f} ± {_number(r['top1_se'], 'NA')}" if r else "–")
        lines.append(f"| {dataset} | {p!r} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"


def _number(value: float | None, missing: str = "–") -> str:
    return missing if value is None else f"{value:.3f}"
