"""The run-folder layout, defined once: the workflow's rules and the aggregation both use it.

One training cell (dataset, method, p, fold, seed) lives in
``results/runs/{dataset}/{method}/p{p}[/fold{k}]/seed{seed}``; the cell part below
``{dataset}/{method}`` is its *cell name* (``p0.5/seed0``, ``p1.0/fold2/seed1``), which is also the
``{cell}`` wildcard of the rules. The MLflow parent run of a (dataset, method, p) sits at
``results/runs/{dataset}/{method}/p{p}/parent_run_id.txt``. Keeping the spelling here means a
folder the rules write is always a folder the aggregation can read back, and vice versa.
"""

from __future__ import annotations

import re
from pathlib import Path

RUNS_ROOT = "results/runs"
CELL_PATTERN = r"p[0-9]+(\.[0-9]+)?(/fold[0-9]+)?/seed[0-9]+"
"""Regular expression of a cell name (the rules' ``{cell}`` wildcard constraint)."""
RUN_PATTERN = RUNS_ROOT + "/{dataset}/{method}/{cell}"
"""A run folder as a Snakemake pattern with ``{dataset}``, ``{method}`` and ``{cell}`` wildcards."""
PARENT_RUN_FILE = "parent_run_id.txt"

_CELL = re.compile(r"p([0-9]+(?:\.[0-9]+)?)(?:/fold([0-9]+))?/seed([0-9]+)")


def run_file(name: str) -> str:
    """A file of every run folder as a Snakemake pattern (``{dataset}``, ``{method}``, ``{cell}``)."""
    return f"{RUN_PATTERN}/{name}"


def cell_name(p: str | float, fold: int | str | None, seed: int | str) -> str:
    """The readable cell folder below ``{dataset}/{method}``."""
    return f"p{p}/seed{seed}" if fold is None else f"p{p}/fold{fold}/seed{seed}"


def parse_cell(cell: str) -> tuple[str, str | None, int]:
    """(p as written, fold or None, seed) of a cell name; ``ValueError`` for anything else."""
    match = _CELL.fullmatch(cell)
    if match is None:
        raise ValueError(f"{cell!r} is not a cell name p<p>[/fold<k>]/seed<s>")
    p, fold, seed = match.groups()
    return p, fold, int(seed)


def run_dir(dataset: str, method: str, p: str | float, fold: int | str | None, seed: int | str) -> str:
    """The run folder of one cell, relative to the workflow's working directory."""
    return f"{RUNS_ROOT}/{dataset}/{method}/{cell_name(p, fold, seed)}"


def parent_run_file(dataset: str, method: str, p: str | float) -> str:
    """Where the MLflow parent run id of one (dataset, method, p) is kept."""
    return f"{RUNS_ROOT}/{dataset}/{method}/p{p}/{PARENT_RUN_FILE}"


def parse_run_dir(folder: str | Path) -> tuple[str, str, str, int | None, int]:
    """(dataset, method, p as written, fold or None, seed) from a run folder's trailing parts.

    Only the last four or five path components are read, so the runs may live under any root.
    ``ValueError`` when the folder does not end in the layout.
    """
    parts = Path(folder).parts
    for depth in (3, 2):  # p/fold/seed, then p/seed
        if len(parts) >= depth + 2:
            try:
                p, fold, seed = parse_cell("/".join(parts[-depth:]))
            except ValueError:
                continue
            dataset, method = parts[-depth - 2 : -depth]
            return dataset, method, p, None if fold is None else int(fold), seed
    raise ValueError(f"{folder} does not end in {{dataset}}/{{method}}/p<p>[/fold<k>]/seed<s>")
