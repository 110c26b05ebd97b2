"""Zero-shot retrieval evaluation of a trained run on one split, written as a metrics JSON.

Loads the run's checkpoint (``--which best`` by default: the highest validation top-1), embeds the
split once, ranks every eligible query with a seeded tie-break (docs/method.md §11), adds bootstrap
intervals over queries, accuracy per misalignment group and, for Gated Symile, gate diagnostics on
positive pairs. The validation split is evaluated too (headline metrics only) as a reference.

The JSON is deterministic for the same run, tensors, split and seed: everything that varies
between identical invocations (wall times) sits under the ``timing`` key. When the run folder
holds ``mlflow_run_id.txt`` and a tracking URI is known (``--tracking-uri`` or the run config),
the headline metrics (prefixed with the split name) and the JSON are logged into that run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gated_symile.config import RunConfig

METRICS_FORMAT = "gated-symile-metrics/1"
HEADLINE_KEYS: tuple[str, ...] = ("top1", "top3", "top5", "mrr", "mean_rank", "chance")
RUN_ID_FILE = "mlflow_run_id.txt"


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
    from gated_symile.intermediates import read_run_id
    from gated_symile.outputs import output_file, write_json

    output_file(args.out)  # a folder in the way fails now, not after the evaluation
    run_id_file = Path(args.run) / RUN_ID_FILE
    run_id = read_run_id(run_id_file) if run_id_file.exists() else None  # checked before the work
    result, run_cfg = evaluate_run(
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
    top1, chance = result["metrics"]["top1"], result["metrics"]["chance"]
    headline = f"top1 {top1:.4f} (chance {chance:.4f})" if top1 is not None else "no eligible query"
    print(
        f"{result['method']} on {result['dataset']}/{result['split']}: {headline}, "
        f"{result['n_queries']} queries -> {args.out}"
    )
    uri = args.tracking_uri if args.tracking_uri is not None else run_cfg.tracking.uri
    if uri is not None and uri.lower() in ("", "none", "off"):
        uri = None
    if uri and run_id is not None:
        from gated_symile.provenance.hashing import MANIFEST_NAME
        from gated_symile.provenance.track import log_final_metrics

        # the training manifest (which tensor and misalignment builds the run saw), renamed: a
        # copy named provenance.json in the artifact store would look like a stage manifest
        manifest = Path(args.run) / MANIFEST_NAME
        texts = {"provenance/training_manifest.json": manifest.read_text()} if manifest.is_file() else {}
        log_final_metrics(uri, run_id, flat_metrics(result), [Path(args.out)], texts, source=run_id_file)
    return 0


def evaluate_run(
    run_dir: Path,
    tensors: Path,
    *,
    misalignment: Path | None = None,
    split: str = "test",
    which: str = "best",
    seed: int | None = None,
    bootstrap_n: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
) -> tuple[dict[str, Any], RunConfig]:
    """Evaluate one trained run on ``split`` (plus ``val`` as reference).

    Returns the metrics JSON dict and the run's config. ``None`` arguments take the run config's
    ``evaluate`` section (seed, bootstrap_n, batch_size).
    """
    import time

    import torch

    from gated_symile.config import config_hash
    from gated_symile.data.datasets import load_tensor_dataset
    from gated_symile.errors import GatedSymileError
    from gated_symile.evaluation.gate_diagnostics import gate_diagnostics
    from gated_symile.evaluation.retrieval import embed_split, evaluate_retrieval
    from gated_symile.training.checkpoint import load_checkpoint, model_from_checkpoint
    from gated_symile.training.loop import select_device, torch_settings

    started = time.perf_counter()
    torch_device = select_device(device)
    checkpoint_file = Path(run_dir) / "checkpoints" / f"{which}.pt"
    checkpoint = load_checkpoint(checkpoint_file)
    model, run_cfg, trained_meta = model_from_checkpoint(checkpoint, torch_device, checkpoint_file)
    state = checkpoint["state"]
    with torch_settings(run_cfg, torch_device):
        dataset = load_tensor_dataset(tensors, misalignment=misalignment)
        meta = dataset.metadata
        for key in ("modalities", "target", "inputs"):
            if meta[key] != trained_meta.get(key):
                raise GatedSymileError(
                    f"{tensors}: {key} {meta[key]!r} differs from the training data's {trained_meta.get(key)!r}"
                )
        seed = run_cfg.evaluate.seed if seed is None else seed
        bootstrap_n = run_cfg.evaluate.bootstrap_n if bootstrap_n is None else bootstrap_n
        batch_size = run_cfg.evaluate.batch_size if batch_size is None else batch_size
        if bootstrap_n < 0 or batch_size < 1:
            raise GatedSymileError(
                f"bootstrap-n must be >= 0 and batch-size >= 1 (got {bootstrap_n}, {batch_size})"
            )
        timing: dict[str, float] = {"load_s": time.perf_counter() - started}

        tick = time.perf_counter()
        data = dataset.split(split)
        embeddings = embed_split(model, data, batch_size=batch_size, device=torch_device)
        result = evaluate_retrieval(
            model,
            data,
            meta,
            seed=seed,
            batch_size=batch_size,
            device=torch_device,
            bootstrap_n=bootstrap_n,
            embeddings=embeddings,
        )
        timing["evaluate_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        gates = gate_diagnostics(model, data, meta, embeddings, batch_size=batch_size)
        timing["gate_diagnostics_s"] = time.perf_counter() - tick

        reference: dict[str, Any] = {}
        if split != "val" and "val" in dataset.split_sizes:
            tick = time.perf_counter()
            val = evaluate_retrieval(
                model, dataset.split("val"), meta, seed=seed, batch_size=batch_size, device=torch_device
            )
            reference["val"] = {"n_queries": val["n_queries"], "metrics": {k: val[k] for k in HEADLINE_KEYS}}
            timing["reference_s"] = time.perf_counter() - tick
        timing["wall_s"] = time.perf_counter() - started

        out = {
            "format": METRICS_FORMAT,
            "dataset": meta.get("dataset", run_cfg.dataset),
            "method": run_cfg.method,
            "objective": run_cfg.objective,
            "model_seed": run_cfg.seed,
            "config_sha256": config_hash(run_cfg),
            "checkpoint": {"which": which, "epoch": state["epoch"], "global_step": state["global_step"]},
            "split": split,
            "misalignment": None if misalignment is None else str(misalignment),
            "seed": seed,
            "bootstrap_n": bootstrap_n,
            "device": torch_device.type,
            "protocol": result["protocol"],
            "target": result["target"],
            "queries": result["queries"],
            "eval_batch": result["eval_batch"],
            "n_queries": result["n_queries"],
            "metrics": {k: result[k] for k in HEADLINE_KEYS},
            "pool_size": result["pool_size"],
            "query_counts": result["query_counts"],
            "bootstrap": result["bootstrap"],
            "stratified": result["stratified"],
            "gate_diagnostics": gates,
            "reference": reference,
            "timing": timing,
        }
        return out, run_cfg


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """MLflow scalars named ``<split>_<metric>``: headline, bootstrap spread, per-group top-1, gate."""
    prefix = result["split"]
    out: dict[str, float] = {f"{prefix}_n_queries": float(result["n_queries"])}
    out.update({f"{prefix}_{k}": v for k, v in result["metrics"].items()})
    for key, stats in (result["bootstrap"] or {}).items():
        if isinstance(stats, dict):
            out.update({f"{prefix}_{key}_boot_{s}": v for s, v in stats.items()})
    for flag, groups in result["stratified"].items():
        out.update({f"{prefix}_top1_{flag}_{g}": v["top1"] for g, v in groups.items()})
    gates = result["gate_diagnostics"]
    if gates is not None:
        out[f"{prefix}_gate_alpha"] = gates["alpha"]
        out.update({f"{prefix}_gate_{k}": v for k, v in gates["overall"].items()})
        for group, stats in (gates["by_corr_mod"] or {}).items():
            out.update({f"{prefix}_gate_{k}_{group}": v for k, v in stats.items()})
    return {k: float(v) for k, v in out.items() if v is not None}
