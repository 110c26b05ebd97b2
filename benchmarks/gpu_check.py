"""GPU readiness in under five minutes: bf16 training throughput, NCCL, and 1-vs-N exactness.

On a machine with CUDA GPUs, in order:

1. **environment**: torch/CUDA versions and the visible GPUs;
2. **bf16 throughput**: training steps exactly as the loop runs them (bf16 autocast for the
   encoders, fp32 loss and gate; ``bench_train_throughput.measure``) for the Symile-MIMIC
   recipe (ResNet-50 CXR at 320 px, 2-D ResNet-18 ECG, labs MLP, D = 1024, Symile ``n``,
   batch 280) and Synthetic-XNOR (MLPs, Gated Symile ``full``, batch 128): samples/s and peak
   GPU memory;
3. **NCCL**: a process group of 1 and of all GPUs (all-reduce of a known tensor);
4. **exactness on GPU**: the GPU tests of tests/test_distributed.py (loss shares on the GPU;
   with two or more GPUs the NCCL ranks against one GPU for every objective and negatives
   mode, fp64 rel 1e-10, fp32 rel 1e-5 with TF32 off);
5. **the stages on the GPU**: ``gated-symile train`` (``train.device: cuda``, bf16 autocast)
   and ``evaluate`` on a small Synthetic-XNOR set for every objective; a run stopped after one
   epoch and resumed against the same run uninterrupted (history and weights), and the GPU
   evaluation of the trained weights against the CPU evaluation of the same weights.

Exits 0 when every check passed (1 otherwise, 0 with a note when there is no GPU). Writes
benchmarks/out/gpu_check.json.

    .venv/bin/python benchmarks/gpu_check.py [--steps 5] [--mimic-batch 280]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import bench_train_throughput as throughput
from gated_symile.cli import main as cli
from gated_symile.synthetic.xnor import XnorConfig, write_xnor
from gated_symile.training.loop import strip_timing

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out" / "gpu_check.json"
RECIPES = {  # name -> (inputs, encoders, objective, embed dim)
    "symile_mimic": (
        {
            "cxr": {"kind": "image_uint8", "shape": [320, 320]},
            "ecg": {"kind": "float32", "shape": [1, 5000, 12]},
            "labs": {"kind": "float32", "shape": [100]},
        },
        {"cxr": {"arch": "resnet50"}, "ecg": {"arch": "ecg_resnet18_2d"}, "labs": {"arch": "mlp_gelu"}},
        "symile",
        1024,
    ),
    "synthetic_xnor": (
        {m: {"kind": "float32", "shape": [128]} for m in ("a", "b", "c")},
        {m: {"arch": "mlp_relu"} for m in ("a", "b", "c")},
        "gated_symile",
        256,
    ),
}


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nccl": ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def bf16_throughput(name: str, batch: int, steps: int) -> dict:
    inputs, encoders, objective, dim = RECIPES[name]
    throughput.SETUPS[name] = (inputs, encoders, batch)
    torch.cuda.reset_peak_memory_stats()
    row = throughput.measure(name, objective, torch.device("cuda"), batch, steps, 2, dim)
    row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def _nccl_worker(rank: int, world: int, init: str, out: str) -> None:
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{init}", rank=rank, world_size=world)
    value = torch.full((1024,), float(rank + 1), device="cuda")
    t0 = time.perf_counter()
    dist.all_reduce(value)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    ok = bool(torch.all(value == world * (world + 1) / 2))
    dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps({"world_size": world, "ok": ok, "first_all_reduce_s": seconds}))


def nccl(world: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "nccl.json"
        mp.spawn(_nccl_worker, args=(world, str(Path(tmp) / "rendezvous"), str(out)), nprocs=world)
        return json.loads(out.read_text())


def exactness_tests() -> dict:
    """The GPU tests of tests/test_distributed.py, run by pytest (they skip what the GPUs lack)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
           str(REPO / "tests" / "test_distributed.py"), "-k", "gpu"]
    path = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    return {"ok": done.returncode == 0, "summary": done.stdout.strip().splitlines()[-1:]}


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = (torch.load(r / "checkpoints" / "last.pt", weights_only=True)["model"] for r in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _train(data: Path, cfg: str, out: Path, *extra: str) -> int:
    return cli(["train", "--tensors", str(data), "--run-config", cfg, "--out", str(out), *extra])


def _evaluate(data: Path, run: Path, out: Path, device: str) -> tuple[int, float]:
    rc = cli(["evaluate", "--run", str(run), "--tensors", str(data), "--out", str(out),
              "--device", device, "--bootstrap-n", "0"])
    return rc, json.loads(out.read_text())["metrics"]["top1"] if rc == 0 else float("nan")


def stages_on(device: str, epochs: int = 3) -> dict:
    """train, stop + resume, evaluate through the CLI on ``device``, as a workflow GPU job runs them.

    Passes when every command succeeds on ``device`` and each resumed run equals its
    uninterrupted twin (history and weights); the GPU-vs-CPU top-1 is reported, not required
    (bf16 and fp32 sums may order a near tie differently)."""
    from tests.train_helpers import OBJECTIVES, inline, read_history, tiny_run_config

    def history(run: Path) -> list[dict]:
        return [strip_timing(record) for record in read_history(run)]

    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "xnor"
        write_xnor(data, XnorConfig(n_samples=2048, n_bits=4, dim=16, p=0.5, eval_batch=64, seed=7))
        for objective in OBJECTIVES:
            cfg = inline(tiny_run_config(objective, epochs=epochs, device=device))
            straight, resumed = Path(tmp) / f"{objective}_straight", Path(tmp) / f"{objective}_resumed"
            t0 = time.perf_counter()
            codes = [_train(data, cfg, straight)]
            seconds = time.perf_counter() - t0
            codes += [_train(data, cfg, resumed, "--max-epochs", "1"),
                      _train(data, cfg, resumed, "--resume")]
            top1 = {}
            for where in (device, "cpu"):
                rc, top1[where] = _evaluate(data, straight, Path(tmp) / f"{objective}_{where}.json", where)
                codes.append(rc)
            if any(codes):
                rows[objective] = {"exit_codes": codes, "device": None}
                continue
            rows[objective] = {
                "exit_codes": codes,
                "device": json.loads((straight / "train_summary.json").read_text())["device"],
                "train_s": seconds,
                "top1": top1,
                "resume_same_history": history(straight) == history(resumed),
                "resume_same_weights": _same_weights(straight, resumed),
            }
    rows["ok"] = all(
        not any(r["exit_codes"]) and r["device"].startswith(device)
        and r["resume_same_history"] and r["resume_same_weights"]
        for r in rows.values()
    )  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--mimic-batch", type=int, default=280)
    parser.add_argument("--xnor-batch", type=int, default=128)
    args = parser.parse_args()
    report: dict = {"environment": environment()}
    print(json.dumps(report["environment"]))
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to check")
        return 0
    started = time.perf_counter()
    report["bf16"] = {
        "symile_mimic": bf16_throughput("symile_mimic", args.mimic_batch, args.steps),
        "synthetic_xnor": bf16_throughput("synthetic_xnor", args.xnor_batch, args.steps),
    }
    for name, row in report["bf16"].items():
        print(f"{name:<15} batch {row['batch']:>4}  {row['samples_per_s']:9.1f} samples/s"
              f"  peak {row['peak_gpu_mib']:9.0f} MiB")
    gpus = torch.cuda.device_count()
    report["nccl"] = [nccl(world) for world in sorted({1, gpus})]
    print("nccl", report["nccl"])
    report["exactness"] = exactness_tests()
    print("exactness", report["exactness"])
    report["stages"] = stages_on("cuda")
    print("stages", json.dumps(report["stages"]))
    report["seconds"] = time.perf_counter() - started
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    ok = all(n["ok"] for n in report["nccl"]) and report["exactness"]["ok"] and report["stages"]["ok"]
    print(f"{'OK' if ok else 'FAILED'} in {report['seconds']:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
