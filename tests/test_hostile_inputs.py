"""Hostile inputs for every stage, through the real command line (issue 11).

Each case damages one input of one stage, in a copy of tiny but real pipeline outputs built once
per session (``pipeline_outputs``, tests/pipeline_outputs.py), and runs ``gated-symile <stage>``
in-process (``gated_symile.cli.main``, stderr captured). Every outcome is one of:

- a non-zero exit with exactly one ``error:`` line that names the damaged file or setting, and no
  traceback (``inspect``: one ``PATH: problem`` line; ``audit``: the manifest named in its report);
- a zero exit with the damaged record in the cohort's exclusions table under its true reason, and
  admission counts that reconcile.

The damages are what interrupted, disk-full or hand-edited runs leave behind (a file missing,
empty, cut in half, overwritten with noise, replaced by a folder or by a file of another format)
plus content that only looks right (NaN rows, wrong columns, shapes, ids, configs) and hostile
output paths (a file where a folder goes, quotes, spaces and non-ASCII characters in names).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.pipeline_outputs import (
    cli,
    evaluate_argv,
    tensors_mimic_argv,
    tensors_ukb_argv,
    train_argv,
)
from tests.train_helpers import inline, tiny_run_config

pytestmark = pytest.mark.slow  # ~40 s of fixtures (conftest), then about 300 cases of under a second

ODD = "it's \"odd\" dätä ü"  # an apostrophe, double quotes, spaces and non-ASCII letters


# ----------------------------------------------------------------------------- outcomes


def run_cli(capsys, argv: list) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli(*argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code: int, err: str, *names: str) -> str:
    """Exit 2, no traceback, exactly one ``error:`` line (the last) naming every one of ``names``."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


# ----------------------------------------------------------------------------- damaged files


def _halve(path: Path) -> None:
    data = path.read_bytes()
    cut = len(data) // 2
    if data[:cut].endswith(b"\n"):  # a cut on a line end could leave a short but well-formed text
        cut -= 1
    path.write_bytes(data[:cut])


def _garble(path: Path) -> None:
    path.write_bytes(np.random.default_rng(11).integers(0, 256, path.stat().st_size, np.uint8).tobytes())


def _into_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "x").write_text("x")


def _other_format(path: Path) -> None:
    if path.suffix == ".json":
        np.save(path.with_suffix(".tmp.npy"), np.arange(4))
        path.with_suffix(".tmp.npy").replace(path)
    else:
        path.write_text(json.dumps({"format": "something-else/1"}) + "\n")


DAMAGES: dict[str, Callable[[Path], None]] = {
    "missing": Path.unlink,
    "empty": lambda p: p.write_bytes(b""),
    "halved": _halve,
    "garbled": _garble,
    "folder": _into_folder,
    "other_format": _other_format,
}


@dataclass(frozen=True)
class Consumer:
    """A stage run on copies of ``inputs`` (fixture names); ``argv(work, b)`` builds its command."""

    inputs: tuple[str, ...]
    argv: Callable[[Path, dict[str, Path]], list]
    files: tuple[str, ...]  # damageable files, relative to the work folder
    out: str = "out"  # the output, relative to the work folder
    skip: tuple[tuple[str, str], ...] = ()  # (file, damage) pairs that are not damage for this stage


CONSUMERS: dict[str, Consumer] = {
    "splits": Consumer(
        ("cohort",), lambda w, b: ["splits", "mimic", "--cohort", w / "cohort/cohort.parquet", "--out", w / "out"],
        ("cohort/cohort.parquet",),
    ),
    "tensors_mimic": Consumer(
        ("splits",), lambda w, b: tensors_mimic_argv(b, w / "splits", w / "out"),
        tuple(f"splits/{f}" for f in ("metadata.json", "train.parquet", "val.parquet", "test.parquet",
                                      "candidates_val.npy", "candidates_test.npy")),
    ),
    "tensors_ukb": Consumer(
        ("ukb_cohort",), lambda w, b: tensors_ukb_argv(w / "ukb_cohort", w / "out"),
        tuple(f"ukb_cohort/{f}" for f in ("summary.json", "participants.parquet", "splits.parquet",
                                          "nmr.parquet", "olink.parquet", "ehr_codes.parquet")),
    ),
    "misalign": Consumer(
        ("tensors",), lambda w, b: ["misalign", "--tensors", w / "tensors", "--out", w / "out", "--p", 0.5,
                                    "--mode", "noise"],
        tuple(f"tensors/{f}" for f in ("metadata.json", "train/ecg.npy", "train/labs.npy",
                                       "train/index.parquet", "val/candidates.npy", "test/cxr.npy")),
    ),
    "train": Consumer(
        ("xnor", "misalign", "config"),
        lambda w, b: train_argv(w / "xnor", w / "misalign", w / "run_config.yaml", w / "run"),
        ("xnor/metadata.json", "xnor/train/a.npy", "xnor/val/b.npy", "xnor/train/index.parquet",
         "misalign/misalign.json", "misalign/manifest_train.parquet", "misalign/noise_mean_b.npy",
         "run_config.yaml"),
        out="run",
        # inline JSON is valid YAML: a config file holding other JSON is a config error (below)
        skip=(("run_config.yaml", "other_format"),),
    ),
    "evaluate": Consumer(
        ("run", "xnor", "misalign"),
        lambda w, b: evaluate_argv(w / "run", w / "xnor", w / "misalign", w / "metrics.json"),
        ("run/checkpoints/best.pt", "run/train_summary.json", "xnor/test/c.npy", "misalign/manifest_test.parquet"),
        out="metrics.json",
        skip=(("run/train_summary.json", "missing"),),  # an untracked run's id is simply absent
    ),
    "aggregate": Consumer(
        ("runs",),
        lambda w, b: ["aggregate", "--metrics", *sorted((w / "runs").rglob("metrics.json")),
                      "--out", w / "tables", "--attrition", w / "runs/attrition.csv"],
        ("runs/xnor/gated_symile/p0.5/seed1/metrics.json", "runs/attrition.csv"),
        out="tables",
        # a missing metrics.json is a cell the runs folder lacks (the aggregate's declared inputs
        # are the workflow's business); resolved_config.yaml is optional and JSON is YAML
        skip=(("runs/xnor/gated_symile/p0.5/seed1/metrics.json", "missing"),
              ("runs/xnor/gated_symile/p0.5/seed1/resolved_config.yaml", "missing"),
              ("runs/xnor/gated_symile/p0.5/seed1/resolved_config.yaml", "other_format")),
    ),
}

DAMAGE_CASES = [
    pytest.param(stage, file, damage, id=f"{stage}:{file}:{damage}")
    for stage, consumer in CONSUMERS.items()
    for file in consumer.files
    for damage in DAMAGES
    if (file, damage) not in consumer.skip
]


def stage_copy(outputs: dict[str, Path], tmp_path: Path, names: tuple[str, ...]) -> Path:
    work = tmp_path / "work"
    for name in names:
        source = outputs[name]
        target = work / source.name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    return work


@pytest.mark.parametrize("stage, file, damage", DAMAGE_CASES)
def test_a_damaged_intermediate_is_one_line_naming_it(pipeline_outputs, tmp_path, capsys, stage, file, damage):
    consumer = CONSUMERS[stage]
    work = stage_copy(pipeline_outputs, tmp_path, consumer.inputs)
    DAMAGES[damage](work / file)
    code, _, err = run_cli(capsys, consumer.argv(work, pipeline_outputs))
    assert_one_error_line(code, err, str(work / file))
    assert not (work / consumer.out).exists()  # nothing half-built under the output's name


# ----------------------------------------------------------------------------- content that only looks right


def _npy(rel: str, edit: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def apply(work: Path) -> None:
        path = work / rel
        np.save(path, edit(np.load(path)))

    return apply


def _parquet(rel: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def apply(work: Path) -> None:
        path = work / rel
        edit(pd.read_parquet(path)).to_parquet(path, index=False)

    return apply


def _json(rel: str, edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(work: Path) -> None:
        path = work / rel
        document = json.loads(path.read_text())
        edit(document)
        path.write_text(json.dumps(document))

    return apply


def _set(array: np.ndarray, index: tuple, value: float) -> np.ndarray:
    array[index] = value
    return array


def _first_lab(frame: pd.DataFrame, value: float) -> pd.DataFrame:
    frame.iloc[3, list(frame.columns).index("50802")] = value
    return frame


def _swap_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[[1, 0, *range(2, len(frame))]].reset_index(drop=True)


def _write(rel: str, text: str) -> Callable[[Path], None]:
    return lambda work: (work / rel).write_text(text)


def _foreign_checkpoint(work: Path) -> None:
    import torch

    torch.save({"format": "gated-symile-checkpoint/1", "model": {}}, work / "run/checkpoints/best.pt")


def _other_model_checkpoint(work: Path) -> None:
    import torch

    path = work / "run/checkpoints/best.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = {"nonsense.weight": torch.zeros(1)}
    torch.save(ckpt, path)


# (stage, id, edit of the work copy, file or setting the error names, words in the error)
CONTENT_CASES = [
    ("splits", "lab column missing", _parquet("cohort/cohort.parquet", lambda f: f.drop(columns=["50802"])),
     "cohort/cohort.parquet", "lacks the columns"),
    ("splits", "rows unsorted", _parquet("cohort/cohort.parquet", _swap_rows), "cohort/cohort.parquet", "not sorted"),
    ("splits", "infinite lab value", _parquet("cohort/cohort.parquet", lambda f: _first_lab(f, np.inf)),
     "cohort/cohort.parquet", "row 3 has an infinite lab value"),
    ("splits", "duplicate admission", _parquet("cohort/cohort.parquet", lambda f: pd.concat([f, f.iloc[[0]]])),
     "cohort/cohort.parquet", "not unique"),
    ("tensors_mimic", "NaN lab percentile", _parquet("splits/train.parquet", lambda f: f.assign(**{f"{f.columns[-1]}": np.nan})),
     "splits/train.parquet", "NaN or infinite"),
    ("tensors_mimic", "candidate out of range", _npy("splits/candidates_val.npy", lambda a: a + 1000),
     "splits/candidates_val.npy", "outside"),
    ("tensors_mimic", "candidates of another split", _npy("splits/candidates_test.npy", lambda a: a[:2]),
     "splits/candidates_test.npy", "shape"),
    ("tensors_mimic", "lab item list not a list", _json("splits/metadata.json", lambda d: d.update(lab_itemids=7)),
     "splits/metadata.json", "lab_itemids"),
    ("tensors_ukb", "n_folds not a number", _json("ukb_cohort/summary.json", lambda d: d["folds"].update(n_folds="5")),
     "ukb_cohort/summary.json", "n_folds"),
    ("tensors_ukb", "eids unsorted", _parquet("ukb_cohort/nmr.parquet", _swap_rows), "ukb_cohort/nmr.parquet", "not sorted"),
    ("tensors_ukb", "infinite feature", _parquet("ukb_cohort/olink.parquet", lambda f: f.assign(**{f.columns[1]: np.inf})),
     "ukb_cohort/olink.parquet", "infinite"),
    ("tensors_ukb", "text feature", _parquet("ukb_cohort/nmr.parquet", lambda f: f.assign(**{f.columns[1]: "high"})),
     "ukb_cohort/nmr.parquet", "not numeric"),
    ("misalign", "format tag", _json("tensors/metadata.json", lambda d: d.update(format="gated-symile-tensors/0")),
     "tensors/metadata.json", "format"),
    ("misalign", "float64 array", _npy("tensors/train/labs.npy", lambda a: a.astype(np.float64)),
     "tensors/train/labs.npy", "dtype"),
    ("misalign", "row count", _npy("tensors/val/labs.npy", lambda a: a[:-1]), "tensors/val/labs.npy", "shape"),
    ("misalign", "NaN ECG row", _npy("tensors/test/ecg.npy", lambda a: _set(a, (2, 0, 7, 3), np.nan)),
     "tensors/test/ecg.npy", "row 2 holds NaN"),
    ("misalign", "index without sample_id", _parquet("tensors/train/index.parquet", lambda f: f.drop(columns=["sample_id"])),
     "tensors/train/index.parquet", "sample_id"),
    ("misalign", "index rows", _parquet("tensors/val/index.parquet", lambda f: f.iloc[:-1]),
     "tensors/val/index.parquet", "rows, expected"),
    ("train", "NaN input row", _npy("xnor/train/a.npy", lambda a: _set(a, (5, 3), np.nan)), "xnor/train/a.npy", "row 5 holds NaN"),
    ("train", "infinite validation row", _npy("xnor/val/c.npy", lambda a: _set(a, (2, 0), -np.inf)),
     "xnor/val/c.npy", "row 2 holds NaN or infinite"),
    ("train", "misalignment of another dataset", _json("xnor/metadata.json", lambda d: d.update(eval_batch=32)),
     "misalign/misalign.json", "another dataset"),
    ("train", "manifest sample ids", _parquet("misalign/manifest_train.parquet", lambda f: f.assign(sample_id=f.sample_id + 1)),
     "misalign/manifest_train.parquet", "does not match"),
    ("train", "donor out of range", _parquet("misalign/manifest_train.parquet",
                                             lambda f: f.assign(mode="swap", corr_b=True, donor_b=10**6)),
     "misalign/manifest_train.parquet", "donor_b"),
    ("train", "NaN noise statistics", _npy("misalign/noise_std_c.npy", lambda a: _set(a, (0,), np.nan)),
     "misalign/noise_std_c.npy", "NaN"),
    ("train", "spec without seed", _json("misalign/misalign.json", lambda d: d["parameters"].pop("seed")),
     "misalign/misalign.json", "seed"),
    ("train", "config file holds a list", _write("run_config.yaml", "- 1\n- 2\n"), "run_config.yaml", "mapping"),
    ("evaluate", "foreign checkpoint", _foreign_checkpoint, "run/checkpoints/best.pt", "lacks"),
    ("evaluate", "weights of another model", _other_model_checkpoint, "run/checkpoints/best.pt", "do not fit"),
    ("evaluate", "run id not an id", _json("run/train_summary.json", lambda d: d.update(mlflow_run_id="nonsense")),
     "run/train_summary.json", "run id"),
    ("evaluate", "NaN test row", _npy("xnor/test/c.npy", lambda a: _set(a, (7, 1), np.nan)), "xnor/test/c.npy", "row 7"),
    ("evaluate", "tensors of another dataset", _json("xnor/metadata.json", lambda d: d.update(target="b")),
     "misalign/misalign.json", "another dataset"),
    ("aggregate", "top-1 above 1", _json("runs/xnor/gated_symile/p0.5/seed1/metrics.json", lambda d: d["metrics"].update(top1=2.0)),
     "seed1/metrics.json", "top1"),
    ("aggregate", "top-1 text", _json("runs/xnor/gated_symile/p0.5/seed1/metrics.json", lambda d: d["metrics"].update(top1="high")),
     "seed1/metrics.json", "top1"),
    ("aggregate", "top-1 NaN", _json("runs/xnor/gated_symile/p0.5/seed1/metrics.json", lambda d: d["metrics"].update(top1=float("nan"))),
     "seed1/metrics.json", "top1"),
    ("aggregate", "gate diagnostics a list", _json("runs/xnor/gated_symile/p0.5/seed1/metrics.json", lambda d: d.update(gate_diagnostics=[1])),
     "seed1/metrics.json", "gate_diagnostics"),
    ("aggregate", "gate weight text", _json("runs/xnor/gated_symile/p0.5/seed1/metrics.json",
                                            lambda d: d["gate_diagnostics"]["overall"].update(w_b="x")),
     "seed1/metrics.json", "gate_diagnostics"),
    ("aggregate", "metrics a list", _write("runs/xnor/gated_symile/p0.5/seed1/metrics.json", "[1, 2]\n"),
     "seed1/metrics.json", "JSON object"),
    ("aggregate", "attrition counts text", _write("runs/attrition.csv", "criterion,remaining,dropped\nall,many,0\n"),
     "runs/attrition.csv", "integers"),
    ("aggregate", "attrition header only", _write("runs/attrition.csv", "criterion,remaining,dropped\n"),
     "runs/attrition.csv", "no rows"),
    ("aggregate", "attrition columns", _write("runs/attrition.csv", "step,left\nall,3\n"), "runs/attrition.csv", "columns"),
]  # fmt: skip


@pytest.mark.parametrize(
    "stage, edit, culprit, words", [pytest.param(s, e, c, w, id=f"{s}:{i}") for s, i, e, c, w in CONTENT_CASES]
)
def test_content_that_only_looks_right_is_one_line(pipeline_outputs, tmp_path, capsys, stage, edit, culprit, words):
    consumer = CONSUMERS[stage]
    work = stage_copy(pipeline_outputs, tmp_path, consumer.inputs)
    edit(work)
    code, _, err = run_cli(capsys, consumer.argv(work, pipeline_outputs))
    assert_one_error_line(code, err, culprit, words)


# ----------------------------------------------------------------------------- run configs


def _config(**changes) -> str:
    document = json.loads(inline(tiny_run_config("gated_symile", epochs=1)))
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = document
        for part in parents:
            target = target[part]
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    return json.dumps(document)


_DELETE = object()
CONFIG_CASES = [
    ("unknown key", _config(train__lr_schedule="cosine"), "train.lr_schedule"),
    ("wrong type", _config(train__batch_size="big"), "train.batch_size"),
    ("negative learning rate", _config(train__lr=-0.1), "train.lr"),
    ("infinite learning rate", _config(train__lr=1e999).replace("Infinity", "1e999"), "train.lr"),
    ("no epochs", _config(train__epochs=0), "train.epochs"),
    ("unknown objective", _config(objective="simclr"), "objective"),
    ("missing section", _config(model=_DELETE), "model"),
    ("gate temperature 0", _config(gate__temp=0.0), "gate.temp"),
    ("invalid JSON", '{"dataset": "xnor",', "--run-config"),
    ("boolean as number", _config(train__lr=True), "train.lr"),
]


@pytest.mark.parametrize("inline_config, setting", [pytest.param(c, s, id=i) for i, c, s in CONFIG_CASES])
def test_a_bad_run_config_names_the_setting(pipeline_outputs, tmp_path, capsys, inline_config, setting):
    code, _, err = run_cli(capsys, train_argv(pipeline_outputs["xnor"], pipeline_outputs["misalign"], inline_config, tmp_path / "run"))
    assert_one_error_line(code, err, setting)
    assert not (tmp_path / "run" / "checkpoints").exists()


# ----------------------------------------------------------------------------- output paths


def _out_argv(stage: str, b: dict[str, Path], out: Path) -> list:
    xnor, mis, cfg = b["xnor"], b["misalign"], b["config"]
    store = f"sqlite:///{out.parent / 'mlflow.db'}"
    return {
        "synth xnor": ["synth", "xnor", "--out", out, "--n-samples", 100, "--n-bits", 4, "--dim", 16],
        "cohort mimic": ["cohort", "mimic", "--mimic-iv", b["raw"] / "mimic-iv", "--ecg", b["raw"] / "mimic-iv-ecg",
                         "--cxr", b["raw"] / "mimic-cxr-jpg", "--out", out],
        "cohort ukb": ["cohort", "ukb", "--raw", b["ukb_raw"], "--out", out],
        "splits": ["splits", "mimic", "--cohort", b["cohort"] / "cohort.parquet", "--out", out],
        "tensors mimic": tensors_mimic_argv(b, b["splits"], out),
        "tensors ukb": tensors_ukb_argv(b["ukb_cohort"], out),
        "misalign": ["misalign", "--tensors", xnor, "--out", out, "--p", 0.5, "--mode", "swap"],
        "train": train_argv(xnor, mis, cfg, out),
        "aggregate": ["aggregate", "--metrics", *sorted(b["runs"].rglob("metrics.json")), "--out", out],
        "evaluate": evaluate_argv(b["run"], xnor, mis, out),
        "track init": ["track", "init", "--uri", store, "--experiment", "e", "--out", out],
        "track parent": ["track", "parent", "--uri", store, "--experiment", "e", "--name", "n", "--out", out],
    }[stage]  # fmt: skip


FOLDER_OUTPUTS = ("synth xnor", "cohort mimic", "cohort ukb", "splits", "tensors mimic", "tensors ukb",
                  "misalign", "train", "aggregate")  # fmt: skip
FILE_OUTPUTS = ("evaluate", "track init", "track parent")


@pytest.mark.parametrize("stage", FOLDER_OUTPUTS)
def test_a_file_where_the_output_folder_goes(pipeline_outputs, tmp_path, capsys, stage):
    out = tmp_path / "out"
    out.write_text("my notes\n")
    code, _, err = run_cli(capsys, _out_argv(stage, pipeline_outputs, out))
    assert_one_error_line(code, err, str(out), "not a folder")
    assert out.read_text() == "my notes\n"


@pytest.mark.parametrize("stage", FILE_OUTPUTS)
def test_a_folder_where_the_output_file_goes(pipeline_outputs, tmp_path, capsys, stage):
    out = tmp_path / "out.json"
    out.mkdir()
    code, _, err = run_cli(capsys, _out_argv(stage, pipeline_outputs, out))
    assert_one_error_line(code, err, str(out), "is a folder")


@pytest.mark.parametrize("stage", ("cohort mimic", "splits", "tensors mimic", "misalign"))
def test_a_foreign_folder_is_never_overwritten(pipeline_outputs, tmp_path, capsys, stage):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("\\begin{document}\n")
    code, _, err = run_cli(capsys, _out_argv(stage, pipeline_outputs, out))
    assert_one_error_line(code, err, str(out), "refusing to overwrite")
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def _same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_odd_characters_in_every_path_work(pipeline_outputs, tmp_path, capsys):
    """Quotes, an apostrophe, spaces and non-ASCII letters in the input and output paths of the
    whole chain (the cohort's DuckDB SQL, the tracking store and the hash cache included)."""
    odd = tmp_path / ODD
    raw = odd / "raw"
    shutil.copytree(pipeline_outputs["raw"], raw)
    steps = [
        ["cohort", "mimic", "--mimic-iv", raw / "mimic-iv", "--ecg", raw / "mimic-iv-ecg",
         "--cxr", raw / "mimic-cxr-jpg", "--out", odd / "cohort"],
        ["splits", "mimic", "--cohort", odd / "cohort/cohort.parquet", "--out", odd / "splits"],
        ["tensors", "mimic", "--splits", odd / "splits", "--ecg", raw / "mimic-iv-ecg",
         "--cxr", raw / "mimic-cxr-jpg", "--out", odd / "tensors", "--cxr-size", 32],
        ["misalign", "--tensors", odd / "tensors", "--out", odd / "misalign", "--p", 0.5, "--mode", "swap"],
        ["track", "init", "--uri", f"sqlite:///{odd / 'mlflow.db'}", "--experiment", ODD, "--out", odd / "store.json"],
    ]  # fmt: skip
    for argv in steps:
        code, _, err = run_cli(capsys, argv)
        assert code == 0, err
    _same_files(odd / "cohort", pipeline_outputs["cohort"], ["cohort.parquet", "exclusions.parquet", "attrition.csv"])
    _same_files(odd / "splits", pipeline_outputs["splits"], ["train.parquet", "candidates_test.npy", "metadata.json"])
    _same_files(odd / "tensors", pipeline_outputs["tensors"], ["metadata.json", "train/ecg.npy", "test/cxr.npy"])
    assert json.loads((odd / "store.json").read_text())["experiment"] == ODD
    code, out, err = run_cli(capsys, ["audit", odd])
    assert code == 0, out + err


def test_a_raw_path_with_a_space_or_quote_reaches_the_stage_intact(tmp_path):
    """Snakemake passes a user's raw paths (``raw.*`` in the config) quoted to the shell."""
    from tests.workflow_helpers import REPO, snakemake

    raw = tmp_path / "my data's" / "mimic"
    config = tmp_path / "real.yaml"
    config.write_text(json.dumps({
        "raw": {"mimic": {"source": "external", "mimic_iv": str(raw / "iv"), "ecg": str(raw / "ecg"),
                          "cxr": str(raw / "cxr")}},
        "experiment": {"datasets": ["mimic"], "methods": ["clip"], "seeds": [0], "p": [0.0]},
    }))  # fmt: skip
    for part in ("iv", "ecg", "cxr"):
        (raw / part).mkdir(parents=True)
    result = snakemake("results/mimic/cohort/cohort.parquet", "-n", "-p", "--workflow-profile", "none",
                       "--directory", tmp_path, "--configfile", REPO / "config.yaml", config)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import shlex

    command = next(line for line in result.stdout.splitlines() if "gated-symile cohort mimic" in line)
    words = shlex.split(command)
    assert words[words.index("--mimic-iv") + 1] == str(raw / "iv")
    assert words[words.index("--cxr") + 1] == str(raw / "cxr")


# ----------------------------------------------------------------------------- raw records and the cohort


READER_DAMAGES = [
    ("ECG signal halved", "ecg_dat", _halve),
    ("ECG header empty", "ecg_hea", lambda p: p.write_bytes(b"")),
    ("ECG header garbled", "ecg_hea", _garble),
    ("ECG record gone", "ecg_hea", lambda p: (p.unlink(), p.with_suffix(".dat").unlink())),
    ("DICOM garbled", "dicom", _garble),
    ("DICOM empty", "dicom", lambda p: p.write_bytes(b"")),
    ("JPG halved", "jpg", _halve),
    ("JPG garbled", "jpg", _garble),
    ("ECG XML halved", "xml", _halve),
    ("ECG XML garbled", "xml", _garble),
]


def _record(b: dict[str, Path], kind: str, work: Path) -> Path:
    """A copy of one real record of ``kind`` in ``work``; the path to damage."""
    if kind.startswith("ecg"):
        hea = next((b["raw"] / "mimic-iv-ecg" / "files").rglob("*.hea"))
        for suffix in (".hea", ".dat"):
            shutil.copy(hea.with_suffix(suffix), work / f"rec{suffix}")
        return work / ("rec.dat" if kind == "ecg_dat" else "rec.hea")
    pattern, root = {"dicom": ("*.dcm", b["raw"] / "mimic-cxr"), "jpg": ("*.jpg", b["raw"] / "mimic-cxr-jpg"),
                     "xml": ("*.xml", b["ukb_raw"])}[kind]  # fmt: skip
    source = next(root.rglob(pattern))
    return Path(shutil.copy(source, work / source.name))


@pytest.mark.parametrize("kind, damage", [pytest.param(k, d, id=i) for i, k, d in READER_DAMAGES])
def test_an_unreadable_record_is_one_line_from_inspect(pipeline_outputs, tmp_path, capsys, kind, damage):
    path = _record(pipeline_outputs, kind, tmp_path)
    damage(path)
    code, _, err = run_cli(capsys, ["inspect", path])
    lines = err.splitlines()
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and str(path.with_suffix("")) in lines[0], err


def _selected(b: dict[str, Path], column: str, row: int) -> str:
    return str(pd.read_parquet(b["cohort"] / "cohort.parquet")[column].iloc[row])


COHORT_EXCLUSIONS = [
    # (id, column of the damaged record in cohort.parquet, file under the release, damage,
    #  exclusion level, words of the record's reason, the admission's reason)
    ("ECG signal halved", "ecg_path", "mimic-iv-ecg/{}.dat", _halve, "ecg_record", "truncated",
     "no valid ECG within [-24 h, +24 h]: ECG record unreadable"),
    ("ECG header gone", "ecg_path", "mimic-iv-ecg/{}.hea", Path.unlink, "ecg_record", "missing",
     "no valid ECG within [-24 h, +24 h]: ECG record missing"),
    ("ECG header garbled", "ecg_path", "mimic-iv-ecg/{}.hea", _garble, "ecg_record", "unreadable",
     "no valid ECG within [-24 h, +24 h]: ECG record unreadable"),
    ("radiograph gone", "cxr_path", "mimic-cxr-jpg/{}", Path.unlink, "cxr_image", "CXR file missing",
     "no usable AP/PA CXR within (24 h, 72 h]: CXR file missing"),
]  # fmt: skip


@pytest.mark.parametrize(
    "column, template, damage, level, reason, admission_reason",
    [pytest.param(*c[1:], id=c[0]) for c in COHORT_EXCLUSIONS],
)
def test_a_damaged_record_is_excluded_with_its_reason(
    pipeline_outputs, tmp_path, capsys, column, template, damage, level, reason, admission_reason
):
    raw = tmp_path / "raw"
    shutil.copytree(pipeline_outputs["raw"], raw)
    record = _selected(pipeline_outputs, column, 0)
    hadm = int(_selected(pipeline_outputs, "hadm_id", 0))
    damage(raw / template.format(record))
    code, _, err = run_cli(capsys, _out_argv("cohort mimic", {**pipeline_outputs, "raw": raw}, tmp_path / "cohort"))
    assert code == 0, err
    cohort = pd.read_parquet(tmp_path / "cohort/cohort.parquet")
    exclusions = pd.read_parquet(tmp_path / "cohort/exclusions.parquet")
    recorded = exclusions[(exclusions["level"] == level) & (exclusions["id"] == record)]
    assert len(recorded) == 1 and reason in recorded["reason"].iloc[0], recorded
    dropped = exclusions[exclusions["level"] == "admission"]
    if hadm not in set(cohort["hadm_id"]):  # no other record of its kind in the window
        assert admission_reason in dropped.loc[dropped["hadm_id"] == hadm, "reason"].iloc[0]
    admissions = pd.read_csv(raw / "mimic-iv/hosp/admissions.csv.gz")
    assert len(cohort) + dropped["hadm_id"].nunique() == len(admissions)
    summary = json.loads((tmp_path / "cohort/summary.json").read_text())
    assert summary["cohort"] == len(cohort) and summary["excluded_admissions"] == len(dropped)


TABLE_DAMAGES = [
    ("admissions cut in half", "mimic-iv/hosp/admissions.csv.gz", _halve),
    ("patients garbled", "mimic-iv/hosp/patients.csv.gz", _garble),
    ("labevents empty", "mimic-iv/hosp/labevents.csv.gz", lambda p: p.write_bytes(b"")),
    ("labevents cut in half", "mimic-iv/hosp/labevents.csv.gz", _halve),
    ("ECG record list gone", "mimic-iv-ecg/record_list.csv", Path.unlink),
    ("ECG record list without a column", "mimic-iv-ecg/record_list.csv",
     lambda p: p.write_text("subject_id,study_id\n1,2\n")),
    ("CXR metadata garbled", "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz", _garble),
    ("CheXpert labels gone", "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz", Path.unlink),
]  # fmt: skip


@pytest.mark.parametrize("table, damage", [pytest.param(t, d, id=i) for i, t, d in TABLE_DAMAGES])
def test_a_damaged_table_stops_the_cohort_naming_it(pipeline_outputs, tmp_path, capsys, table, damage):
    raw = tmp_path / "raw"
    shutil.copytree(pipeline_outputs["raw"], raw)
    damage(raw / table)
    code, _, err = run_cli(capsys, _out_argv("cohort mimic", {**pipeline_outputs, "raw": raw}, tmp_path / "cohort"))
    assert_one_error_line(code, err, Path(table).name)
    assert not (tmp_path / "cohort").exists()


# ----------------------------------------------------------------------------- audit


@pytest.mark.parametrize("damage", ["empty", "halved", "garbled", "other_format"])
def test_a_damaged_manifest_is_reported_by_the_audit(pipeline_outputs, tmp_path, capsys, damage):
    results = tmp_path / "results"
    shutil.copytree(pipeline_outputs["results"], results)
    manifest = results / "run" / "provenance.json"
    DAMAGES[damage](manifest)
    code, out, err = run_cli(capsys, ["audit", results])
    assert code == 1 and err == "" and "Traceback" not in out
    assert f"manifest unreadable: {manifest}" in out


@pytest.mark.parametrize(
    "edit",
    [
        lambda doc: doc.update(outputs=5),
        lambda doc: doc["outputs"][0].pop("sha256"),
        lambda doc: doc["inputs"][0].update(path=3),
        lambda doc: doc["inputs"][0].update(producers=[{"path": "x"}]),
        lambda doc: doc.update(finished=7),
    ],
    ids=["outputs not a list", "entry without sha256", "path a number", "producer without sha256", "time a number"],
)
def test_a_manifest_with_broken_entries_is_reported_by_the_audit(pipeline_outputs, tmp_path, capsys, edit):
    results = tmp_path / "results"
    shutil.copytree(pipeline_outputs["results"], results)
    manifest = results / "run" / "provenance.json"
    doc = json.loads(manifest.read_text())
    edit(doc)
    manifest.write_text(json.dumps(doc))
    code, out, err = run_cli(capsys, ["audit", results])
    assert code == 1 and err == "" and f"manifest unreadable: {manifest}" in out


def test_the_audit_of_a_file_or_nothing_is_one_line(tmp_path, capsys):
    for target in (tmp_path / "absent", Path(shutil.copy(__file__, tmp_path / "a_file.py"))):
        code, _, err = run_cli(capsys, ["audit", target])
        assert_one_error_line(code, err, str(target))
