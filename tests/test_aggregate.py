"""Aggregation over hand-written metrics JSON files: SE math, cells, folds, markdown, figures."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gated_symile.reporting.aggregate import estimate, mean_se, method_key
from gated_symile.cli import main
from gated_symile.errors import RecordError
from gated_symile.stages.aggregate import aggregate


def gates(w_b: float, w_c: float) -> dict:
    group = lambda wb, wc: {"n_pairs": 10, "w_b": wb, "w_c": wc, "w_b-w_c": wb - wc, "p_null": 0.1,  # noqa: E731
                            "cos_b": 0.9, "cos_c": 0.9}
    return {"alpha": 0.5, "rows": "...", "overall": group(0.5, 0.5),
            "by_corr_mod": {"clean": group(0.5, 0.5), "b_corrupted": group(w_b, w_c),
                            "c_corrupted": group(w_c, w_b),
                            "several_corrupted": {k: None for k in group(0, 0)} | {"n_pairs": 0}}}


def write_run(root: Path, rel: str, top1: float | None, *, gate: dict | None = None, pool: float = 128.0,
              batch: int | None = None) -> None:
    folder = root / rel
    folder.mkdir(parents=True)
    body = {"format": "gated-symile-metrics/1", "metrics": {"top1": top1, "chance": 1 / pool},
            "pool_size": {"min": pool, "max": pool, "mean": pool}, "gate_diagnostics": gate}
    (folder / "metrics.json").write_text(json.dumps(body))
    if batch is not None:
        (folder / "resolved_config.yaml").write_text(f"train:\n  batch_size: {batch}\n")


@pytest.fixture
def runs(tmp_path) -> Path:
    return write_runs(tmp_path / "runs")


@pytest.fixture(scope="module")
def aggregated(tmp_path_factory) -> tuple[Path, dict]:
    """The standard runs aggregated once (figures are the slow part) for the read-only tests."""
    tmp = tmp_path_factory.mktemp("agg")
    return tmp / "out", aggregate(write_runs(tmp / "runs"), tmp / "out")


def write_runs(root: Path) -> Path:
    for seed, (a, b) in enumerate([(0.5, 0.6), (0.7, 0.8), (0.6, 0.7)]):
        write_run(root, f"xnor/symile/p0.5/seed{seed}", a)
        write_run(root, f"xnor/gated_symile/p0.5/seed{seed}", b, gate=gates(0.2 + seed / 10, 0.8))
        write_run(root, f"xnor/clip/p1.0/seed{seed}", 0.3)
    write_run(root, "xnor/gated_symile-nonull/p0.5/seed0", 0.4, gate=gates(0.3, 0.7))
    write_run(root, "xnor/symile/p0.0/seed0", 0.9)
    # UKB-style folds: fold means 0.4 (seeds .3/.5) and 0.8 (one seed)
    write_run(root, "ukb/symile/p0.0/fold0/seed0", 0.3)
    write_run(root, "ukb/symile/p0.0/fold0/seed1", 0.5)
    write_run(root, "ukb/symile/p0.0/fold1/seed0", 0.8)
    write_run(root, "xnor/clip/p0.5/seed9", None)  # no eligible query: excluded with a reason
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_summary_rows_se_and_folds(aggregated):
    out, result = aggregated
    rows = read_csv(out / "summary.csv")
    assert list(rows[0]) == ["dataset", "method", "p", "top1_mean", "top1_se", "n_runs"]
    cells = [(r["dataset"], r["method"], r["p"]) for r in rows]
    assert len(cells) == len(set(cells)) == result["n_cells"] == 6
    assert cells == [("ukb", "symile", "0.0"), ("xnor", "clip", "1.0"), ("xnor", "symile", "0.0"),
                     ("xnor", "symile", "0.5"), ("xnor", "gated_symile", "0.5"),
                     ("xnor", "gated_symile-nonull", "0.5")]
    by = {c: r for c, r in zip(cells, rows)}
    sym = by[("xnor", "symile", "0.5")]
    assert float(sym["top1_mean"]) == pytest.approx(0.6)
    assert float(sym["top1_se"]) == pytest.approx(0.1 / math.sqrt(3), abs=1e-6)  # sd 0.1, n 3
    assert sym["n_runs"] == "3"
    assert float(by[("xnor", "symile", "0.0")]["top1_se"]) == 0.0  # one run
    assert float(by[("xnor", "clip", "1.0")]["top1_se"]) == 0.0  # identical values
    ukb = by[("ukb", "symile", "0.0")]
    assert float(ukb["top1_mean"]) == pytest.approx(0.6)  # mean of fold means, not of runs (0.533)
    assert float(ukb["top1_se"]) == pytest.approx(math.sqrt(0.08) / math.sqrt(2), abs=1e-6)
    assert ukb["n_runs"] == "3"
    assert read_csv(out / "excluded_runs.csv") == [
        {"path": "xnor/clip/p0.5/seed9/metrics.json", "reason": "top1 is null (no eligible query)"}]


def test_markdown_and_wide_table(aggregated):
    out, _ = aggregated
    md = (out / "summary.md").read_text()
    assert "| dataset | p | clip | symile | gated_symile | gated_symile-nonull |" in md
    assert "| xnor | 0.5 | – | 0.600 ± 0.058 | 0.700 ± 0.058 | 0.400 ± 0.000 |" in md
    wide = read_csv(out / "top1_by_p.csv")
    assert list(wide[0])[:4] == ["dataset", "method", "p0.0_mean", "p0.0_se"]
    sym = next(r for r in wide if r["dataset"] == "xnor" and r["method"] == "symile")
    assert sym["p0.0_mean"] == "0.900000" and sym["p0.5_mean"] == "0.600000" and sym["p1.0_mean"] == ""


def test_gate_diagnostics_table(aggregated):
    out, _ = aggregated
    rows = read_csv(out / "gate_diagnostics.csv")
    assert {r["method"] for r in rows} == {"gated_symile", "gated_symile-nonull"}
    get = {(r["method"], r["group"], r["statistic"]): r for r in rows}
    wb = get[("gated_symile", "b_corrupted", "w_b")]
    assert float(wb["mean"]) == pytest.approx(0.3) and wb["n_runs"] == "3"
    assert float(wb["se"]) == pytest.approx(0.1 / math.sqrt(3), abs=1e-6)
    assert float(get[("gated_symile", "c_corrupted", "w_b-w_c")]["mean"]) == pytest.approx(0.5)
    assert ("gated_symile", "overall", "alpha") in get
    assert not any(r["group"] == "several_corrupted" for r in rows)  # null stats do not count
    groups = [r["group"] for r in rows if r["method"] == "gated_symile"]
    assert groups[0] == "overall" and groups.index("clean") < groups.index("b_corrupted")


def test_figures_written_deterministic_and_notes(runs, tmp_path):
    attrition = tmp_path / "attrition.csv"
    attrition.write_text("criterion,remaining,dropped\nadmissions,100,0\nwith ECG,60,40\n")
    a, b = tmp_path / "a", tmp_path / "b"
    aggregate(runs, a, attrition=attrition)
    aggregate(runs, b, attrition=attrition)
    figs = sorted(p.name for p in (a / "figures").iterdir())
    assert figs == ["attrition.png", "attrition.svg", "gate_weights.png", "gate_weights.svg", "notes.txt",
                    "top1_vs_p.png", "top1_vs_p.svg"]
    for name in figs:
        data = (a / "figures" / name).read_bytes()
        assert name == "notes.txt" or len(data) > 1000
        assert data == (b / "figures" / name).read_bytes(), name
    assert b"Date" not in (a / "figures" / "top1_vs_p.svg").read_bytes()
    notes = (a / "figures" / "notes.txt").read_text()
    assert "top1_vs_pool skipped" in notes and "top1_vs_batch skipped" in notes
    for name in ("summary.csv", "summary.md", "top1_by_p.csv", "gate_diagnostics.csv"):
        assert hashlib.sha256((a / name).read_bytes()).digest() == hashlib.sha256((b / name).read_bytes()).digest()


def test_scale_figures_when_several_sizes(tmp_path):
    root = tmp_path / "runs"
    for size, top1 in ((64, 0.5), (128, 0.4), (512, 0.3)):
        write_run(root, f"xnor/symile-bs{size}/p0.5/seed0", top1, pool=float(size), batch=size)
    out = tmp_path / "out"
    result = aggregate(root, out)
    assert (out / "figures" / "top1_vs_pool.svg").stat().st_size > 1000
    assert (out / "figures" / "top1_vs_batch.png").stat().st_size > 1000
    assert result["notes"] == ["gate_weights skipped: no run has gate diagnostics",
                               "attrition skipped: no --attrition CSV given"]
    # a rerun with fewer runs removes the now-skipped figure
    for size in (128, 512):
        (root / f"xnor/symile-bs{size}/p0.5/seed0/metrics.json").unlink()
    aggregate(root, out)
    assert not (out / "figures" / "top1_vs_pool.svg").exists()


def test_bad_json_is_named_and_cli(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["aggregate", "--runs", str(runs), "--out", str(out)]) == 0
    assert "14 runs in 6 cells (1 excluded)" in capsys.readouterr().out
    (runs / "xnor/symile/p0.5/seed0/metrics.json").write_text("{not json")
    with pytest.raises(RecordError, match="seed0/metrics.json"):
        aggregate(runs, out)
    assert main(["aggregate", "--runs", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_method_order():
    names = ["zeta", "gated_symile-nonull", "symile", "clip", "gated_symile"]
    assert sorted(names, key=method_key) == ["clip", "symile", "gated_symile", "gated_symile-nonull", "zeta"]


@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_mean_se_matches_definition(values):
    mean, se = mean_se(values)
    n = len(values)
    assert mean == pytest.approx(sum(values) / n, abs=1e-12)
    if n == 1:
        assert se == 0.0
    else:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        assert se == pytest.approx(sd / math.sqrt(n), abs=1e-12)
    assert estimate([(None, v) for v in values]).mean == pytest.approx(mean)
    # one fold per value: the fold-level estimate equals the seed-level one
    folded = estimate([(k, v) for k, v in enumerate(values)])
    assert (folded.mean, folded.se) == pytest.approx((mean, se))
