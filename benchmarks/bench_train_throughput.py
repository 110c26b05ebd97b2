"""Training throughput (samples/s) per encoder and objective, on CPU and optionally CUDA.

One timed training step = embed (bf16 autocast on CUDA) + loss + backward + grad clip + AdamW
step, exactly as ``gated_symile.training.loop`` does it, on random in-memory inputs of the
tensor-format shapes (no disk I/O). Each setup puts the named encoder on the target modality and
cheap MLPs on 16-dim query modalities, so its numbers measure that encoder; ``mimic64`` and
``xnor`` are the full three-encoder models of those datasets.

    .venv/bin/python benchmarks/bench_train_throughput.py [--device cuda] [--steps 3] [--setups xnor,labs]

Prints a table and writes benchmarks/out/train_throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from gated_symile.config import resolve_run_config
from gated_symile.method.model import ContrastiveModel
from gated_symile.training.optim import build_optimizer

OUT = Path(__file__).resolve().parent / "out" / "train_throughput.json"
_VEC16 = {"kind": "float32", "shape": [16]}

# name -> (inputs by modality (target first), encoder configs, default CPU batch)
SETUPS: dict[str, tuple[dict[str, dict], dict[str, dict], int]] = {
    "cxr_resnet18_64px": (
        {"cxr": {"kind": "image_uint8", "shape": [64, 64]}, "q1": _VEC16, "q2": _VEC16},
        {"cxr": {"arch": "resnet18"}},
        16,
    ),
    "cxr_resnet18_320px_w16": (
        {"cxr": {"kind": "image_uint8", "shape": [320, 320]}, "q1": _VEC16, "q2": _VEC16},
        {"cxr": {"arch": "resnet18", "width": 16}},
        8,
    ),
    "ecg_resnet18_2d": (
        {"ecg": {"kind": "float32", "shape": [1, 5000, 12]}, "q1": _VEC16, "q2": _VEC16},
        {"ecg": {"arch": "ecg_resnet18_2d"}},
        4,
    ),
    "labs_mlp": (
        {"labs": {"kind": "float32", "shape": [100]}, "q1": _VEC16, "q2": _VEC16},
        {"labs": {"arch": "mlp_gelu"}},
        128,
    ),
    "xnor_mlp": (
        {m: {"kind": "float32", "shape": [128]} for m in ("a", "b", "c")},
        {m: {"arch": "mlp_relu"} for m in ("a", "b", "c")},
        128,
    ),
    "mimic64": (
        {
            "cxr": {"kind": "image_uint8", "shape": [64, 64]},
            "ecg": {"kind": "float32", "shape": [1, 5000, 12]},
            "labs": {"kind": "float32", "shape": [100]},
        },
        {},
        4,
    ),
}
OBJECTIVES = ("clip", "symile", "gated_symile")


def run_config(objective: str, encoders: dict, embed_dim: int, batch: int, device: str):
    cfg = {
        "methods": {objective: {"objective": objective}},
        "datasets": {"bench": {}},
        "model": {
            "embed_dim": embed_dim,
            "embedding_norm": "l2_dvs",
            "logit_scale": {"init": 0.0},
            "encoders": encoders,
        },
        "loss": {"negatives": "full" if objective == "gated_symile" else "n"},
        "train": {"batch_size": batch, "device": device},
    }
    return resolve_run_config(cfg, "bench", objective, 0)


def random_batch(
    inputs: dict[str, dict], batch: int, device: torch.device
) -> dict[str, torch.Tensor]:
    out = {}
    for m, spec in inputs.items():
        shape = [3, *spec["shape"]] if spec["kind"] == "image_uint8" else spec["shape"]
        out[m] = torch.randn(batch, *shape, device=device)
    return out


def measure(
    setup: str,
    objective: str,
    device: torch.device,
    batch: int,
    steps: int,
    warmup: int,
    embed_dim: int,
) -> dict[str, Any]:
    inputs, encoders, _ = SETUPS[setup]
    cfg = run_config(objective, encoders, embed_dim, batch, device.type)
    metadata = {"modalities": list(inputs), "target": next(iter(inputs)), "inputs": inputs}
    model = ContrastiveModel(metadata, cfg).to(device).train()
    optimizer = build_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator(device=device).manual_seed(0)
    data = random_batch(inputs, batch, device)
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
        if device.type == "cuda"
        else contextlib.nullcontext
    )

    def step() -> None:
        with autocast():
            embs = model.embed(data)
        loss = model.loss(embs, None, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    return {
        "setup": setup,
        "objective": objective,
        "device": device.type,
        "batch": batch,
        "steps": steps,
        "ms_per_step": 1000 * seconds,
        "samples_per_s": batch / seconds,
        "params": sum(p.numel() for p in params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cuda: measure on the GPU as well as the CPU",
    )
    parser.add_argument("--skip-cpu", action="store_true", help="with --device cuda: GPU only")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--steps", type=int, default=2, help="timed steps per cell")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, help="CPU batch for every setup (default per setup)")
    parser.add_argument("--gpu-batch", type=int, default=128)
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    devices = [] if args.skip_cpu else [torch.device("cpu")]
    if args.device == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device available")
        devices.append(torch.device("cuda"))
    rows = []
    print(
        f"{'setup':<24} {'objective':<13} {'device':<6} {'batch':>5} {'ms/step':>9} {'samples/s':>10}"
    )
    for device in devices:
        for setup in args.setups.split(","):
            batch = args.gpu_batch if device.type == "cuda" else (args.batch or SETUPS[setup][2])
            for objective in args.objectives.split(","):
                row = measure(
                    setup, objective, device, batch, args.steps, args.warmup, args.embed_dim
                )
                rows.append(row)
                print(
                    f"{setup:<24} {objective:<13} {device.type:<6} {batch:>5} "
                    f"{row['ms_per_step']:>9.1f} {row['samples_per_s']:>10.1f}",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "embed_dim": args.embed_dim,
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
