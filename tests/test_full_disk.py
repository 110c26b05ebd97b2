"""Writing stages on a full disk: a file-size limit (``RLIMIT_FSIZE``) stands in for it.

Each stage runs as the real console script in a child process whose files may not grow past a
limit smaller than its largest output (SIGXFSZ ignored, so a write fails with EFBIG as on a full
disk). The stage must end with exit code 2 and one ``error:`` line naming the path it could not
write, leave nothing under its output's name that a rerun would take for complete (no
half-written file, no half-built folder, no temporary file), and a rerun without the limit must
give exactly the outputs of an undisturbed run.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gated_symile.training.loop import strip_timing
from tests.pipeline_outputs import evaluate_argv, tensors_mimic_argv, train_argv

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _limited(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def run_stage(argv: list, limit: int | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GATED_SYMILE_HASH_CACHE": "off", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(BIN / "gated-symile"), *map(str, argv)], env=env, capture_output=True, text=True,
        timeout=600, preexec_fn=None if limit is None else _limited(limit),
    )  # fmt: skip


def _argv(stage: str, b: dict[str, Path], out: Path) -> list:
    return {
        "cohort": ["cohort", "mimic", "--mimic-iv", b["raw"] / "mimic-iv", "--ecg", b["raw"] / "mimic-iv-ecg",
                   "--cxr", b["raw"] / "mimic-cxr-jpg", "--out", out],
        "splits": ["splits", "mimic", "--cohort", b["cohort"] / "cohort.parquet", "--out", out],
        "tensors": tensors_mimic_argv(b, b["splits"], out),
        "misalign": ["misalign", "--tensors", b["xnor"], "--out", out, "--p", 0.5, "--mode", "noise"],
        "train": train_argv(b["xnor"], b["misalign"], b["config"], out),
        "evaluate": evaluate_argv(b["run"], b["xnor"], b["misalign"], out),
        "aggregate": ["aggregate", "--metrics", *sorted(b["runs"].rglob("metrics.json")), "--out", out,
                      "--attrition", b["runs"] / "attrition.csv"],
    }[stage]  # fmt: skip


# stage, size limit in bytes (below its largest output), files compared with an undisturbed run
# (the session's pipeline outputs, built with the same arguments; aggregate runs once more)
STAGES = [
    ("cohort", 8 << 10, ["cohort.parquet", "exclusions.parquet", "attrition.csv", "summary.json"]),
    ("splits", 8 << 10, ["train.parquet", "test.parquet", "candidates_val.npy", "metadata.json"]),
    ("tensors", 1 << 20, ["train/ecg.npy", "val/cxr.npy", "test/labs.npy", "metadata.json"]),
    ("misalign", 2 << 10, ["manifest_train.parquet", "noise_std_b.npy", "misalign.json"]),
    ("train", 16 << 10, ["history.jsonl", "train_summary.json"]),
    ("train", 6 << 10, ["history.jsonl", "train_summary.json"]),  # torch's zip writer fails otherwise
    ("evaluate", 2 << 10, [""]),
    ("aggregate", 8 << 10, ["summary.csv", "gate_diagnostics.csv", "figures/top1_vs_p.png"]),
]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".partial")))


@pytest.mark.parametrize("stage, limit, compared", STAGES, ids=[f"{s[0]}-{s[1] >> 10}KiB" for s in STAGES])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(pipeline_outputs, tmp_path, stage, limit, compared):
    out = tmp_path / ("metrics.json" if stage == "evaluate" else "out")
    failed = run_stage(_argv(stage, pipeline_outputs, out), limit)
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr
    assert lines[-1].startswith(f"error: {out}") and "cannot write" in lines[-1], lines[-1]
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    if stage == "train":  # a run folder is resumable: only whole files, and no summary that says done
        assert not (out / "train_summary.json").exists()
        assert not (out / "checkpoints" / "best.pt").exists()
    else:
        assert not out.exists()
    assert _leftovers(tmp_path) == []

    rerun = run_stage(_argv(stage, pipeline_outputs, out), None)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    reference = _reference(stage, pipeline_outputs, tmp_path)
    for name in compared:
        assert _content(out / name) == _content(reference / name), name


def _reference(stage: str, b: dict[str, Path], tmp_path: Path) -> Path:
    if stage == "aggregate":
        again = tmp_path / "reference"
        assert run_stage(_argv(stage, b, again), None).returncode == 0
        return again
    return {"evaluate": b["run"] / "metrics.json", "train": b["run"]}.get(stage, b.get(stage))


def _content(path: Path) -> object:
    """What must be equal between two runs: the bytes, less wall-clock times where a file has them."""
    if path.suffix == ".json" and path.name != "metadata.json":
        return {k: v for k, v in json.loads(path.read_text()).items() if k != "timing" and "wall_s" not in k}
    if path.name == "history.jsonl":
        return [strip_timing(json.loads(line)) for line in path.read_text().splitlines()]
    return path.read_bytes()


@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "existing-store"])
def test_track_init_on_a_full_disk_is_one_line_and_leaves_no_half_store(tmp_path, existing):
    """A new store is built aside and linked into place whole; a write to an existing one fails
    naming it. Either way the rerun without the limit completes."""
    db = tmp_path / "mlflow" / "mlflow.db"

    def argv(experiment: str) -> list:
        return ["track", "init", "--uri", f"sqlite:///{db}", "--experiment", experiment,
                "--out", tmp_path / f"{experiment}.json"]  # fmt: skip

    if existing:
        assert run_stage(argv("first"), None).returncode == 0
    failed = run_stage(argv("e"), 4 << 10)
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {db}: cannot write"), lines
    assert not (tmp_path / "e.json").exists()
    assert sorted(p.name for p in db.parent.iterdir()) == (["mlflow.db"] if existing else [])
    rerun = run_stage(argv("e"), None)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    flag = json.loads((tmp_path / "e.json").read_text())
    assert flag["experiment_id"] == ("2" if existing else "1")
