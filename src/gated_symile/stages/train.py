"""Train one model (CLIP, Symile or Gated Symile) on a tensor dataset, with checkpoint/resume.

``--run-config`` is the resolved run config (``gated_symile.config.resolve_run_config``) as a YAML
or JSON file, or inline JSON (the Snakemake rule passes it inline). Writes RUN_DIR/checkpoints/
{last,best}.pt, resolved_config.yaml, history.jsonl, train_summary.json and, when tracked,
mlflow_run_id.txt. ``--resume`` continues a killed run from last.pt with identical results on CPU.

Started N times by torchrun or srun (``train.launcher``), the processes train together on the
same global batches (docs/distributed.md); rank 0 writes the run folder and logs to MLflow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gated_symile.errors import ConfigError

if TYPE_CHECKING:
    from gated_symile.config import RunConfig
    from gated_symile.provenance.track import TrainingRun
    from gated_symile.training.distributed import Processes


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from gated_symile.provenance.manifests import declare
    from gated_symile.stages.flags import setting_choices

    parser.add_argument("--tensors", type=Path, required=True, help="tensor dataset folder")
    parser.add_argument(
        "--run-config",
        required=True,
        metavar="CFG",
        help="resolved run config: YAML/JSON file or inline JSON",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder")
    parser.add_argument(
        "--misalignment",
        type=Path,
        help="misalignment folder (misalign stage) applied when loading",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt if present"
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow store (overrides tracking.uri; 'none' disables)"
    )
    parser.add_argument("--experiment", help="MLflow experiment (overrides tracking.experiment)")
    parser.add_argument("--parent-run-id-file", type=Path, help="file holding the parent run id")
    parser.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="extra MLflow tag"
    )
    parser.add_argument("--max-epochs", type=int, help="stop after this many epochs in total (cap)")
    parser.add_argument(
        "--progress",
        choices=setting_choices("train.progress"),
        help="progress bar (overrides train.progress)",
    )
    parser.set_defaults(func=run)
    declare(parser, inputs=["run_config"])  # a file path when not inline JSON


def load_run_config_arg(value: str) -> Any:
    """RunConfig from inline JSON (starts with '{') or a YAML/JSON file path."""
    from gated_symile.config import RunConfig

    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--run-config: inline JSON is invalid ({exc})") from None
    else:
        from gated_symile.intermediates import read_yaml

        path = Path(value)
        if not path.exists():
            raise ConfigError(f"{path}: run config file not found")
        data = read_yaml(path, "run config")
    return RunConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    from gated_symile.training.distributed import process_group

    run_cfg = load_run_config_arg(args.run_config)
    if args.max_epochs is not None and args.max_epochs < 1:
        raise ConfigError(f"--max-epochs: must be >= 1, got {args.max_epochs}")
    with process_group(run_cfg) as procs:
        status = _train(args, run_cfg, procs)
        procs.barrier()  # rank 0's files are complete before any rank reports success
    return status


def _distributed_tags(run_cfg: RunConfig, procs: Processes) -> dict[str, str]:
    """MLflow tags of a multi-process run (world size, backend, every rank's device); a
    collective, so every rank calls it."""
    if not procs.distributed:
        return {}
    from gated_symile.training.distributed import device_names, training_device

    device = training_device(procs, run_cfg.train.device)
    return {
        "distributed.world_size": str(procs.world_size),
        "distributed.backend": str(procs.backend),
        "distributed.launcher": run_cfg.train.launcher,
        "distributed.devices": device_names(procs, device),
    }


def _train(args: argparse.Namespace, run_cfg: RunConfig, procs: Processes) -> int:
    from gated_symile.data.datasets import load_tensor_dataset
    from gated_symile.outputs import output_folder
    from gated_symile.training.loop import fit, show_progress

    dataset = load_tensor_dataset(args.tensors, misalignment=args.misalignment)
    for name in ("train", "val"):  # open (and check) now: a bad file fails before any training
        dataset.split(name)
    out: Path = output_folder(args.out)
    if not args.resume and procs.is_main:
        _clear_previous(out)
    procs.barrier()  # no rank starts before the previous run's files are gone

    tracker = _start_tracking(args, run_cfg, procs, out)
    progress = None if args.progress is None else show_progress(args.progress)
    try:
        summary = fit(
            dataset,
            run_cfg,
            out,
            resume=args.resume,
            max_epochs=args.max_epochs,
            logger=tracker,
            progress=progress,
            procs=procs,
        )
    except BaseException:
        if tracker is not None:
            tracker.client.set_terminated(tracker.run_id, status="FAILED")
        raise
    if procs.is_main:
        _finish(args, run_cfg, out, summary, tracker)
    return 0


def _start_tracking(
    args: argparse.Namespace, run_cfg: RunConfig, procs: Processes, out: Path
) -> TrainingRun | None:
    """Rank 0's MLflow run (None when tracking is off, and on the other ranks).

    Opened before the first epoch so that every epoch is logged as it ends, tagged with what ties
    the run to its inputs (the manifests' digest) and its processes; the flags override the config.
    """
    from gated_symile.intermediates import read_run_id
    from gated_symile.provenance.manifests import inputs_digest
    from gated_symile.provenance.track import TrainingRun, parse_tags

    uri = args.tracking_uri if args.tracking_uri is not None else run_cfg.tracking.uri
    if uri is not None and uri.lower() in ("", "none", "off"):
        uri = None
    tags = {**parse_tags(args.tag), **_distributed_tags(run_cfg, procs)}  # a collective: every rank
    if uri is None or not procs.is_main:
        return None
    parent = None
    if args.parent_run_id_file is not None:
        if not args.parent_run_id_file.exists():
            raise ConfigError(f"{args.parent_run_id_file}: parent run id file not found")
        parent = read_run_id(args.parent_run_id_file, "parent run id file")
    manifests_sha = inputs_digest([args.tensors, args.misalignment])
    if manifests_sha is not None:
        tags["provenance.inputs.sha256"] = manifests_sha
    return TrainingRun(
        uri,
        args.experiment or run_cfg.tracking.experiment,
        out,
        run_cfg,
        args.tensors,
        parent_run_id=parent,
        tags=tags,
        misalignment_dir=args.misalignment,
    )


def _finish(
    args: argparse.Namespace,
    run_cfg: RunConfig,
    out: Path,
    summary: dict[str, Any],
    tracker: TrainingRun | None,
) -> None:
    """Rank 0 writes ``train_summary.json`` with what only the stage knows (misalignment, MLflow
    run), then closes the MLflow run with the run folder's files as artifacts."""
    from gated_symile.outputs import write_json

    summary["misalignment"] = None if args.misalignment is None else str(args.misalignment)
    if tracker is not None:
        summary["mlflow_run_id"] = tracker.run_id
    write_json(out / "train_summary.json", summary)
    if tracker is not None:
        artifacts = [
            out / "resolved_config.yaml",
            out / "history.jsonl",
            out / "train_summary.json",
        ]
        if run_cfg.tracking.log_checkpoint:
            artifacts.append(out / "checkpoints" / "best.pt")
        tracker.finish(artifacts, summary)
    print(json.dumps(summary, indent=2, sort_keys=True))


def _clear_previous(out: Path) -> None:
    """A fresh (non-resumed) run must not inherit a previous run's checkpoints or MLflow run."""
    for rel in (
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "history.jsonl",
        "train_summary.json",
        "mlflow_run_id.txt",
    ):
        (out / rel).unlink(missing_ok=True)
