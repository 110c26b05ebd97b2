"""Zero-shot retrieval evaluation of a trained run on one split, written as a metrics JSON.

Loads the run's checkpoint (``--which best`` by default: the highest validation top-1), embeds the
split once, ranks every eligible query with a seeded tie-break (docs/method.md §11), adds bootstrap
intervals over queries, accuracy per misalignment group and, for Gated Symile, gate diagnostics on
positive pairs. The validation split is evaluated too (headline metrics only) as a reference.
``--out-ranks`` also writes the test queries' ranks keyed by split row
(:mod:`gated_symile.evaluation.query_ranks`), which the aggregate stage pairs across methods.

The JSON is deterministic for the same run, tensors, split and seed: everything that varies
between identical invocations (wall times) sits under the ``timing`` key. When the run folder
names an MLflow run in ``train_summary.json`` and a tracking URI is known (``--tracking-uri`` or the run config),
the headline metrics (prefixed with the split name) and the JSON are logged into that run.
The evaluation itself lives in :mod:`gated_symile.evaluation.trained_run`; this module is its CLI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TRAIN_SUMMARY = "train_summary.json"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="training run folder (holds checkpoints/)")
    parser.add_argument("--tensors", type=Path, required=True, help="tensor dataset folder")
    parser.add_argument(
        "--misalignment",
        type=Path,
        default=None,
        help="misalignment folder (misalign stage) applied when loading; accuracy is stratified by it",
    )
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument(
        "--out-ranks", type=Path, default=None, help="per-query ranks (Parquet) to write (optional)"
    )
    parser.add_argument("--which", choices=["best", "last"], default="best", help="checkpoint (default best)")
    parser.add_argument(
        "--seed", type=int, default=None, help="tie-break/bootstrap seed (default: run config)"
    )
    parser.add_argument(
        "--bootstrap-n", type=int, default=None, help="bootstrap replicates (default: run config; 0 = off)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="embedding/scoring block (default: run config)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (default auto)")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow URI (default: the run config's; 'none' disables)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gated_symile.evaluation.trained_run import evaluate_run, flat_metrics
    from gated_symile.outputs import output_file, write_json

    output_file(args.out)  # a folder in the way fails now, not after the evaluation
    summary_file = Path(args.run) / TRAIN_SUMMARY
    run_id = _mlflow_run_id(summary_file)  # checked before the work
    result, run_cfg, ranks = evaluate_run(
        args.run,
        args.tensors,
        misalignment=args.misalignment,
        split=args.split,
        which=args.which,
        seed=args.seed,
        bootstrap_n=args.bootstrap_n,
        batch_size=args.batch_size,
        device=args.device,
    )
    write_json(args.out, result)
    if args.out_ranks is not None:
        from gated_symile.evaluation.query_ranks import write_query_ranks

        write_query_ranks(ranks, args.out_ranks)
    top1, chance = result["metrics"]["top1"], result["metrics"]["chance"]
    headline = f"top1 {top1:.4f} (chance {chance:.4f})" if top1 is not None else "no eligible query"
    print(
        f"{result['method']} on {result['dataset']}/{result['split']}: {headline}, "
        f"{result['n_queries']} queries -> {args.out}"
    )
    uri = args.tracking_uri if args.tracking_uri is not None else run_cfg.tracking.uri
    if uri is not None and uri.lower() in ("", "none", "off"):
        uri = None
    if uri and run_id:
        from gated_symile.provenance.hashing import MANIFEST_NAME
        from gated_symile.provenance.track import log_final_metrics

        # the training manifest (which tensor and misalignment builds the run saw), renamed: a
        # copy named provenance.json in the artifact store would look like a stage manifest
        manifest = Path(args.run) / MANIFEST_NAME
        texts = {"provenance/training_manifest.json": manifest.read_text()} if manifest.is_file() else {}
        log_final_metrics(uri, run_id, flat_metrics(result), [Path(args.out)], texts, source=summary_file)
    return 0


def _mlflow_run_id(summary_file: Path) -> str | None:
    """The MLflow run the training job logged to, from its ``train_summary.json`` (None: untracked)."""
    from gated_symile.intermediates import checked_run_id, read_json

    if not summary_file.exists():
        return None
    run_id = read_json(summary_file, "training summary").get("mlflow_run_id")
    return None if run_id is None else checked_run_id(summary_file, run_id, "training summary's mlflow_run_id")
