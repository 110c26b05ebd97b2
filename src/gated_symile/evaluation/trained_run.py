"""Zero-shot retrieval evaluation of a trained run on one split: the metrics JSON of the evaluate stage.

Loads the run's checkpoint (``which="best"`` by default: the highest validation top-1), embeds the
split once, ranks every eligible query with a seeded tie-break (docs/method.md §11), adds bootstrap
intervals over queries, accuracy per misalignment group and, for Gated Symile, gate diagnostics on
positive pairs. The validation split is evaluated too (headline metrics only) as a reference.

The result is deterministic for the same run, tensors, split and seed: everything that varies
between identical invocations (wall times) sits under the ``timing`` key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gated_symile.config import RunConfig, config_hash
from gated_symile.data.datasets import load_tensor_dataset
from gated_symile.errors import GatedSymileError
from gated_symile.evaluation.gate_diagnostics import gate_diagnostics
from gated_symile.evaluation.retrieval import (
    QueryRanks,
    RetrievalTask,
    embed_split,
    evaluate_retrieval,
    rank_queries,
    summarise_ranks,
)
from gated_symile.training.checkpoint import load_checkpoint, model_from_checkpoint
from gated_symile.training.device import select_device, torch_settings

__all__ = ["HEADLINE_KEYS", "METRICS_FORMAT", "evaluate_run", "flat_metrics"]

METRICS_FORMAT = "gated-symile-metrics/1"
HEADLINE_KEYS: tuple[str, ...] = ("top1", "top3", "top5", "mrr", "mean_rank", "chance")


@dataclass(frozen=True)
class EvalSettings:
    """Tie-break/bootstrap seed, bootstrap replicates and embedding/scoring block of one evaluation."""

    seed: int
    bootstrap_n: int
    batch_size: int


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
) -> tuple[dict[str, Any], RunConfig, QueryRanks]:
    """Evaluate one trained run on ``split`` (plus ``val`` as reference).

    Returns the metrics JSON dict, the run's config and the split's per-query ranks. ``None``
    arguments take the run config's ``evaluate`` section (seed, bootstrap_n, batch_size).
    """
    started = time.perf_counter()
    torch_device = select_device(device)
    checkpoint_file = Path(run_dir) / "checkpoints" / f"{which}.pt"
    checkpoint = load_checkpoint(checkpoint_file)
    model, run_cfg, trained_meta = model_from_checkpoint(checkpoint, torch_device, checkpoint_file)
    state = checkpoint["state"]
    with torch_settings(run_cfg, torch_device):
        dataset = load_tensor_dataset(tensors, misalignment=misalignment)
        meta = dataset.metadata
        check_same_inputs(tensors, meta, trained_meta)
        settings = resolve_settings(run_cfg, seed, bootstrap_n, batch_size)
        timing: dict[str, float] = {"load_s": time.perf_counter() - started}

        result, ranks, gates = _evaluate_split(model, dataset, split, settings, torch_device, timing)
        reference = _reference_val(model, dataset, split, settings, torch_device, timing)
        timing["wall_s"] = time.perf_counter() - started

        out = {
            "format": METRICS_FORMAT,
            **_evaluated_model(run_cfg, meta, state, which),
            "split": split,
            "misalignment": None if misalignment is None else str(misalignment),
            "seed": settings.seed,
            "bootstrap_n": settings.bootstrap_n,
            "device": torch_device.type,
            **_split_results(result),
            "gate_diagnostics": gates,
            "reference": reference,
            "timing": timing,
        }
        return out, run_cfg, ranks


def _evaluated_model(
    run_cfg: RunConfig, meta: dict[str, Any], state: dict[str, Any], which: str
) -> dict[str, Any]:
    """Which model the metrics belong to (method, seed, config hash, checkpoint), so that a metrics
    file names what it scores on its own, without the run folder beside it."""
    return {
        "dataset": meta.get("dataset", run_cfg.dataset),
        "method": run_cfg.method,
        "objective": run_cfg.objective,
        "model_seed": run_cfg.seed,
        "train_batch_size": run_cfg.train.batch_size,
        "config_sha256": config_hash(run_cfg),
        "checkpoint": {"which": which, "epoch": state["epoch"], "global_step": state["global_step"]},
    }


def _split_results(result: dict[str, Any]) -> dict[str, Any]:
    """The split's retrieval results, the headline metrics gathered under ``metrics`` (the object
    that ``flat_metrics`` and the aggregation read) and the rest under their own names."""
    kept = ("protocol", "target", "queries", "eval_batch", "n_queries", "pool_size",
            "query_counts", "bootstrap", "stratified")  # fmt: skip
    return {**{key: result[key] for key in kept}, "metrics": {k: result[k] for k in HEADLINE_KEYS}}


def check_same_inputs(tensors: Path, meta: dict[str, Any], trained_meta: dict[str, Any]) -> None:
    """The evaluated tensors must have the modalities, target and input shapes the run trained on."""
    for key in ("modalities", "target", "inputs"):
        if meta[key] != trained_meta.get(key):
            raise GatedSymileError(
                f"{tensors}: {key} {meta[key]!r} differs from the training data's {trained_meta.get(key)!r}"
            )


def resolve_settings(
    run_cfg: RunConfig, seed: int | None, bootstrap_n: int | None, batch_size: int | None
) -> EvalSettings:
    """The given settings, ``None`` ones from the run config's ``evaluate`` section, checked
    against that section's limits in the schema (a flag meets the same bounds as the key)."""
    from gated_symile.schemas import check_section

    seed = run_cfg.evaluate.seed if seed is None else seed
    bootstrap_n = run_cfg.evaluate.bootstrap_n if bootstrap_n is None else bootstrap_n
    batch_size = run_cfg.evaluate.batch_size if batch_size is None else batch_size
    check_section({"seed": seed, "bootstrap_n": bootstrap_n, "batch_size": batch_size}, "evaluate")
    return EvalSettings(seed, bootstrap_n, batch_size)


def _evaluate_split(
    model: Any,
    dataset: Any,
    split: str,
    settings: EvalSettings,
    device: torch.device,
    timing: dict[str, float],
) -> tuple[dict[str, Any], QueryRanks, dict[str, Any] | None]:
    """Ranks, summary metrics and gate diagnostics of ``split`` (adds their wall times to ``timing``)."""
    seed, batch_size = settings.seed, settings.batch_size
    tick = time.perf_counter()
    data = dataset.split(split)
    embeddings = embed_split(model, data, batch_size=batch_size, device=device)
    task = RetrievalTask.from_metadata(dataset.metadata)
    ranks = rank_queries(model, data, task, embeddings, seed=seed, batch_size=batch_size, device=device)
    result = summarise_ranks(ranks, data, task, seed=seed, bootstrap_n=settings.bootstrap_n)
    timing["evaluate_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    gates = gate_diagnostics(model, data, dataset.metadata, embeddings, batch_size=batch_size)
    timing["gate_diagnostics_s"] = time.perf_counter() - tick
    return result, ranks, gates


def _reference_val(
    model: Any,
    dataset: Any,
    split: str,
    settings: EvalSettings,
    device: torch.device,
    timing: dict[str, float],
) -> dict[str, Any]:
    """Headline metrics of the validation split when another split is evaluated (else empty)."""
    if split == "val" or "val" not in dataset.split_sizes:
        return {}
    tick = time.perf_counter()
    val = evaluate_retrieval(
        model,
        dataset.split("val"),
        dataset.metadata,
        seed=settings.seed,
        batch_size=settings.batch_size,
        device=device,
    )
    timing["reference_s"] = time.perf_counter() - tick
    return {"val": {"n_queries": val["n_queries"], "metrics": {k: val[k] for k in HEADLINE_KEYS}}}


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
