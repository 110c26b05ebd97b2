"""aggregate: summary tables and figures over every run's metrics.json.

Reads ``RUNS/{dataset}/{method}/p{p}/seed{seed}/metrics.json`` (and ``.../fold{k}/seed{seed}/``)
and writes into OUT: ``summary.csv`` (dataset, method, p, top1_mean, top1_se, n_runs),
``summary.md``, ``top1_by_p.csv``, ``gate_diagnostics.csv``, ``excluded_runs.csv``,
``provenance.md`` (code versions, digests of every dataset and raw input, from the stage
manifests) and ``figures/`` (PNG + SVG): top-1 vs p, gate weights by corruption type, top-1 vs
contrastive scale (when runs at several pool or batch sizes exist), cohort attrition (with
``--attrition``).
``figures/notes.txt`` says which figures were skipped and why.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, required=True, help="runs root: {dataset}/{method}/p{p}/seed{seed}/")
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables and figures/")
    parser.add_argument("--attrition", type=Path, default=None, help="cohort attrition.csv (optional)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = aggregate(args.runs, args.out, attrition=args.attrition)
    print(f"{result['n_runs']} runs in {result['n_cells']} cells ({result['n_excluded']} excluded) -> {args.out}")
    for note in result["notes"]:
        print(f"note: {note}")
    return 0


def aggregate(runs_root: Path, out: Path, *, attrition: Path | None = None) -> dict[str, Any]:
    """Write every table and figure; returns counts and the skip notes.

    ``out`` is built beside its final name and moved there whole (``gated_symile.outputs``): a
    figure skipped this time never survives from an earlier run, and a failure (say a damaged
    attrition CSV) leaves the earlier tables as they were, not half of them replaced.
    """
    from gated_symile.reporting import aggregate as agg
    from gated_symile.errors import GatedSymileError
    from gated_symile.outputs import staged_folder

    runs, excluded = agg.discover_runs(runs_root)
    if not runs:
        raise GatedSymileError(f"{runs_root}: no usable metrics.json under {{dataset}}/{{method}}/p{{p}}/seed{{seed}}/")
    with staged_folder(out, markers=["summary.csv"], what="results tables folder") as work:
        n_cells, notes = _write_tables(runs, excluded, runs_root, work, attrition)
    return {"n_runs": len(runs), "n_cells": n_cells, "n_excluded": len(excluded), "notes": notes}


def _write_tables(
    runs: list[Any], excluded: list[tuple[str, str]], runs_root: Path, out: Path, attrition: Path | None
) -> tuple[int, list[str]]:
    from gated_symile.reporting import aggregate as agg
    from gated_symile.reporting import figures
    from gated_symile.provenance.audit import provenance_report
    from gated_symile.outputs import output_folder, write_text

    fig_dir = output_folder(out / "figures")
    summary = agg.summary_rows(runs)
    agg.write_csv(out / "summary.csv", agg.SUMMARY_COLUMNS, summary)
    write_text(out / "summary.md", "# Top-1 accuracy (mean ± SE)\n\n" + agg.markdown_table(summary))
    columns, wide = agg.wide_rows(summary)
    agg.write_csv(out / "top1_by_p.csv", columns, wide)
    gates = agg.gate_rows(runs)
    agg.write_csv(out / "gate_diagnostics.csv", agg.GATE_COLUMNS, gates)
    agg.write_csv(out / "excluded_runs.csv", ("path", "reason"),
                  ({"path": p, "reason": r} for p, r in excluded))

    notes = []
    figures.top1_vs_p(summary, fig_dir / "top1_vs_p")
    if gates:
        figures.gate_weights(gates, fig_dir / "gate_weights")
    else:
        notes.append("gate_weights skipped: no run has gate diagnostics")
    points = agg.scale_points(runs)
    for scale in ("pool", "batch"):
        if figures.top1_vs_scale(points, scale, fig_dir / f"top1_vs_{scale}") is None:
            notes.append(f"top1_vs_{scale} skipped: no method was run at two or more {scale} sizes")
    if attrition is not None:
        figures.attrition(attrition, fig_dir / "attrition")
    else:
        notes.append("attrition skipped: no --attrition CSV given")
    write_text(fig_dir / "notes.txt", "".join(f"{n}\n" for n in notes))
    write_text(out / "provenance.md", provenance_report(runs_root))
    return len(summary), notes
