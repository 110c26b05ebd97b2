"""aggregate: summary tables and figures over exactly the given runs' metrics.json.

Reads the ``--metrics`` files (layout ``.../{dataset}/{method}/p{p}/[fold{k}/]seed{seed}/
metrics.json``, which gives each run's cell) and nothing else from the runs: a run folder left
over from an earlier grid is not in the tables unless it is named. ``--ranks`` adds each run's
per-query ranks (``ranks.parquet`` beside its metrics.json) for the paired method contrasts;
``--oracle`` adds the oracle yardsticks (``.../{dataset}/p{p}.json``).

Writes into OUT: ``summary.csv`` (dataset, method, p, top1_mean, top1_se, n_runs, chance,
oracle_top1, pairwise_oracle_top1; SE empty for a single run), ``summary.md``, ``contrasts.csv``
(per dataset and p, top-1 of method a minus method b over the same test queries with a 95 %
bootstrap CI, and the spread over seeds), ``top1_by_p.csv``, ``gate_diagnostics.csv``,
``excluded_runs.csv``, ``provenance.md`` (code versions, digests of every dataset and raw input,
from the given runs' stage manifests) and ``figures/`` (PNG + SVG): top-1 vs p, gate weights by
corruption type, top-1 vs contrastive scale (when runs at several pool or batch sizes exist),
cohort attrition (with ``--attrition``). ``figures/notes.txt`` says which figures were skipped
and why.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from gated_symile.reporting.contrasts import BOOTSTRAP_N, BOOTSTRAP_SEED

    parser.add_argument("--metrics", type=Path, nargs="+", required=True,
                        help="the runs' metrics.json files: .../{dataset}/{method}/p{p}/[fold{k}/]seed{seed}/")
    parser.add_argument("--ranks", type=Path, nargs="*", default=[],
                        help="per-query ranks.parquet files beside the metrics files (paired contrasts)")
    parser.add_argument("--oracle", type=Path, nargs="*", default=[],
                        help="oracle yardsticks .../{dataset}/p{p}.json (optional)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables and figures/")
    parser.add_argument("--attrition", type=Path, default=None, help="cohort attrition.csv (optional)")
    parser.add_argument("--bootstrap-n", type=int, default=BOOTSTRAP_N,
                        help=f"bootstrap replicates per contrast (default {BOOTSTRAP_N}; 0 = no CI)")
    parser.add_argument("--seed", type=int, default=BOOTSTRAP_SEED,
                        help=f"bootstrap seed (default {BOOTSTRAP_SEED})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = aggregate(args.metrics, args.out, ranks=args.ranks, oracle=args.oracle, attrition=args.attrition,
                       bootstrap_n=args.bootstrap_n, seed=args.seed)
    print(f"{result['n_runs']} runs in {result['n_cells']} cells ({result['n_excluded']} excluded), "
          f"{result['n_contrasts']} contrasts -> {args.out}")
    for note in result["notes"]:
        print(f"note: {note}")
    return 0


def aggregate(
    metrics: list[Path],
    out: Path,
    *,
    ranks: list[Path] = (),
    oracle: list[Path] = (),
    attrition: Path | None = None,
    bootstrap_n: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Write every table and figure; returns counts and the skip notes.

    ``bootstrap_n`` and ``seed`` default to :mod:`gated_symile.reporting.contrasts`' constants.
    """
    from gated_symile.errors import GatedSymileError
    from gated_symile.outputs import staged_folder
    from gated_symile.reporting import aggregate as agg
    from gated_symile.reporting import contrasts

    bootstrap_n = contrasts.BOOTSTRAP_N if bootstrap_n is None else bootstrap_n
    seed = contrasts.BOOTSTRAP_SEED if seed is None else seed
    if bootstrap_n < 0:
        raise GatedSymileError(f"--bootstrap-n must be >= 0, got {bootstrap_n}")
    runs, excluded = agg.load_runs(metrics, ranks)
    if not runs:
        raise GatedSymileError(f"{metrics[0]}: no usable run among the {len(metrics)} metrics files given")
    oracles = agg.read_oracles(oracle)
    # ``out`` is built beside its final name and moved there whole (``gated_symile.outputs``): a
    # figure skipped this time never survives from an earlier run, and a failure leaves the
    # earlier tables as they were, not half of them replaced.
    with staged_folder(out, markers=["summary.csv"], what="results tables folder") as work:
        counts = _write_tables(runs, excluded, oracles, metrics, work, attrition, bootstrap_n, seed)
    return {"n_runs": len(runs), "n_excluded": len(excluded), **counts}


def _write_tables(
    runs: list[Any],
    excluded: list[tuple[str, str]],
    oracles: Any,
    metrics: list[Path],
    out: Path,
    attrition: Path | None,
    bootstrap_n: int,
    seed: int,
) -> dict[str, Any]:
    """Every table and figure into ``out`` (the staged folder); returns the counts and notes."""
    from gated_symile.outputs import output_folder, write_text
    from gated_symile.provenance.audit import provenance_report
    from gated_symile.provenance.manifests import manifest_path
    from gated_symile.reporting import aggregate as agg
    from gated_symile.reporting import contrasts, figures

    fig_dir = output_folder(out / "figures")
    summary = agg.summary_rows(runs, oracles)
    agg.write_csv(out / "summary.csv", agg.SUMMARY_COLUMNS, summary)
    pairs = contrasts.contrast_rows(runs, n_boot=bootstrap_n, seed=seed)
    agg.write_csv(out / "contrasts.csv", contrasts.COLUMNS, pairs)
    write_text(out / "summary.md", summary_markdown(summary, pairs))
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
    sources = [m for m in map(manifest_path, map(Path, metrics)) if m.is_file()]
    write_text(out / "provenance.md", provenance_report(sources))
    return {"n_cells": len(summary), "n_contrasts": len(pairs), "notes": notes}


def summary_markdown(summary: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> str:
    """summary.md: the top-1 table with its yardsticks, then the paired contrasts."""
    from gated_symile.reporting import aggregate as agg
    from gated_symile.reporting import contrasts

    title = "# Top-1 accuracy (mean ± SE over seeds, or over folds where there are several; NA: one run)"
    text = title + "\n\n" + agg.markdown_table(summary)
    text += ("\n# Paired differences in top-1 (method a − method b, same test queries)\n\n"
             "95 % percentile bootstrap interval over test queries (per-query correctness averaged "
             "over seeds, queries resampled within folds); sd over seeds: spread of the per-seed "
             "differences (NA: one seed).\n\n")
    return text + (contrasts.markdown_table(pairs) if pairs else "No contrasts: no per-query ranks given.\n")
