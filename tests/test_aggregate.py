"""Aggregation over hand-written metrics JSON files: SE math, cells, folds, markdown, figures, and
reading exactly the declared files (a stale run folder stays out)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gated_symile.reporting.aggregate import estimate, mean_se, method_key
from gated_symile.cli import main
from gated_symile.errors import GatedSymileError, RecordError
from gated_symile.stages.aggregate import aggregate


def gates(w_b: float, w_c: float) -> dict:
    group = lambda wb, wc: {"n_pairs": 10, "w_b": wb, "w_c": wc, "w_b-w_c": wb - wc, "p_null": 0.1,
                            "cos_b": 0.9, "cos_c": 0.9}
    return {"alpha": 0.5, "rows": "...", "overall": group(0.5, 0.5),
            "by_corr_mod": {"clean": group(0.5, 0.5), "b_corrupted": group(w_b, w_c),
                            "c_corrupted": group(w_c, w_b),
                            "several_corrupted": {k: None for k in group(0, 0)} | {"n_pairs": 0}}}


def write_run(root: Path, rel: str, top1: float | None, *, gate: dict | None = None, pool: float = 128.0,
              batch: int | None = None) -> Path:
    """A run's metrics.json (as the evaluate stage writes it, minus what aggregate ignores)."""
    folder = root / rel
    folder.mkdir(parents=True)
    body = {"format": "gated-symile-metrics/1", "metrics": {"top1": top1, "chance": 1 / pool},
            "pool_size": {"min": pool, "max": pool, "mean": pool}, "gate_diagnostics": gate,
            "train_batch_size": batch}
    (folder / "metrics.json").write_text(json.dumps(body))
    return folder / "metrics.json"


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return write_runs(tmp_path / "runs")


@pytest.fixture(scope="module")
def aggregated(tmp_path_factory) -> tuple[Path, dict]:
    """The standard runs aggregated once (figures are the slow part) for the read-only tests."""
    tmp = tmp_path_factory.mktemp("agg")
    return tmp / "out", aggregate(write_runs(tmp / "runs"), tmp / "out")


def write_runs(root: Path) -> list[Path]:
    files = []
    for seed, (a, b) in enumerate([(0.5, 0.6), (0.7, 0.8), (0.6, 0.7)]):
        files.append(write_run(root, f"xnor/symile/p0.5/seed{seed}", a))
        files.append(write_run(root, f"xnor/gated_symile/p0.5/seed{seed}", b, gate=gates(0.2 + seed / 10, 0.8)))
        files.append(write_run(root, f"xnor/clip/p1.0/seed{seed}", 0.3))
    files.append(write_run(root, "xnor/gated_symile-nonull/p0.5/seed0", 0.4, gate=gates(0.3, 0.7)))
    files.append(write_run(root, "xnor/symile/p0.0/seed0", 0.9))
    # UKB-style folds: fold means 0.4 (seeds .3/.5) and 0.8 (one seed)
    files.append(write_run(root, "ukb/symile/p0.0/fold0/seed0", 0.3))
    files.append(write_run(root, "ukb/symile/p0.0/fold0/seed1", 0.5))
    files.append(write_run(root, "ukb/symile/p0.0/fold1/seed0", 0.8))
    files.append(write_run(root, "xnor/clip/p0.5/seed9", None))  # no eligible query: excluded with a reason
    return files


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_summary_rows_se_and_folds(aggregated):
    out, result = aggregated
    rows = read_csv(out / "summary.csv")
    assert list(rows[0]) == ["dataset", "method", "p", "top1_mean", "top1_se", "n_runs", "chance",
                             "oracle_top1", "pairwise_oracle_top1"]
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
    assert float(sym["chance"]) == pytest.approx(1 / 128, abs=1e-6) and sym["oracle_top1"] == ""  # no oracle given
    assert by[("xnor", "symile", "0.0")]["top1_se"] == ""  # one run: undefined, never 0.000
    assert float(by[("xnor", "clip", "1.0")]["top1_se"]) == 0.0  # identical values
    ukb = by[("ukb", "symile", "0.0")]
    assert float(ukb["top1_mean"]) == pytest.approx(0.6)  # mean of fold means, not of runs (0.533)
    assert float(ukb["top1_se"]) == pytest.approx(math.sqrt(0.08) / math.sqrt(2), abs=1e-6)
    assert ukb["n_runs"] == "3"
    excluded = read_csv(out / "excluded_runs.csv")
    assert len(excluded) == 1 and excluded[0]["path"].endswith("xnor/clip/p0.5/seed9/metrics.json")
    assert excluded[0]["reason"] == "top1 is null (no eligible query)"


def test_markdown_and_wide_table(aggregated):
    out, _ = aggregated
    md = (out / "summary.md").read_text()
    assert "| dataset | p | chance | oracle | pairwise oracle | clip | symile | gated_symile | gated_symile-nonull |" in md
    assert "| xnor | 0.5 | 0.008 | – | – | – | 0.600 ± 0.058 | 0.700 ± 0.058 | 0.400 ± NA |" in md
    assert "| 0.900 ± NA |" in md  # a single run's SE is undefined
    assert "| 0.300 ± 0.000 |" in md  # three identical runs: a true zero
    assert "No contrasts: no per-query ranks given." in md
    wide = read_csv(out / "top1_by_p.csv")
    assert list(wide[0])[:4] == ["dataset", "method", "p0.0_mean", "p0.0_se"]
    sym = next(r for r in wide if r["dataset"] == "xnor" and r["method"] == "symile")
    assert sym["p0.0_mean"] == "0.900000" and sym["p0.5_mean"] == "0.600000" and sym["p1.0_mean"] == ""
    assert sym["p0.0_se"] == ""


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
    files = [write_run(root, f"xnor/symile-bs{size}/p0.5/seed0", top1, pool=float(size), batch=size)
             for size, top1 in ((64, 0.5), (128, 0.4), (512, 0.3))]
    out = tmp_path / "out"
    result = aggregate(files, out)
    assert (out / "figures" / "top1_vs_pool.svg").stat().st_size > 1000
    assert (out / "figures" / "top1_vs_batch.png").stat().st_size > 1000
    assert result["notes"] == ["gate_weights skipped: no run has gate diagnostics",
                               "attrition skipped: no --attrition CSV given"]
    # a rerun with fewer runs removes the now-skipped figure
    aggregate(files[:1], out)
    assert not (out / "figures" / "top1_vs_pool.svg").exists()


def test_bad_json_is_named_and_cli(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["aggregate", "--metrics", *map(str, runs), "--out", str(out)]) == 0
    assert "14 runs in 6 cells (1 excluded), 0 contrasts" in capsys.readouterr().out
    (tmp_path / "runs/xnor/symile/p0.5/seed0/metrics.json").write_text("{not json")
    with pytest.raises(RecordError, match="seed0/metrics.json"):
        aggregate(runs, out)
    assert main(["aggregate", "--metrics", str(tmp_path / "none/metrics.json"), "--out", str(out)]) == 2


def test_method_order():
    names = ["zeta", "gated_symile-nonull", "symile", "clip", "gated_symile"]
    assert sorted(names, key=method_key) == ["clip", "symile", "gated_symile", "gated_symile-nonull", "zeta"]


@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_mean_se_matches_definition(values):
    mean, se = mean_se(values)
    n = len(values)
    assert mean == pytest.approx(sum(values) / n, abs=1e-12)
    if n == 1:
        assert se is None
    else:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        assert se == pytest.approx(sd / math.sqrt(n), abs=1e-12)
    assert estimate([(None, v) for v in values]).mean == pytest.approx(mean)
    # one fold per value: the fold-level estimate equals the seed-level one
    folded = estimate([(k, v) for k, v in enumerate(values)])
    assert folded.mean == pytest.approx(mean)
    assert folded.se == (None if se is None else pytest.approx(se))
    # a single fold: its seeds are the replicates (the SE is theirs, not undefined)
    one_fold = estimate([(0, v) for v in values])
    assert (one_fold.mean, one_fold.se) == (pytest.approx(mean), None if se is None else pytest.approx(se))


# ----------------------------------------------------------------------------- declared inputs


def write_ranks(metrics_file: Path, correct: list[int], pool: int = 10) -> Path:
    """The run's ranks.parquet (rank 1 where correct, else 2) and matching metrics fields."""
    import numpy as np

    from gated_symile.evaluation.query_ranks import write_query_ranks
    from gated_symile.evaluation.retrieval import QueryRanks

    ranks = np.where(np.asarray(correct) == 1, 1, 2)
    body = json.loads(metrics_file.read_text())
    body["n_queries"] = len(correct)
    body["metrics"]["top1"] = float(np.mean(ranks == 1))
    metrics_file.write_text(json.dumps(body))
    out = metrics_file.with_name("ranks.parquet")
    write_query_ranks(QueryRanks(np.arange(len(correct)), ranks, np.full(len(correct), pool)), out)
    return out


def test_a_stale_run_folder_is_not_aggregated(tmp_path, capsys):
    """A run left from an earlier grid (p 0.25, a removed method) stays out unless declared."""
    root = tmp_path / "results/runs"
    declared = [write_run(root, f"xnor/{m}/p0.5/seed0", 0.5) for m in ("symile", "gated_symile")]
    stale = [write_run(root, "xnor/symile/p0.25/seed0", 0.9), write_run(root, "xnor/old_method/p0.5/seed0", 0.1)]
    for file in stale:  # an evaluate manifest of the stale run must not reach provenance.md either
        file.with_name("metrics.json.provenance.json").write_text("{}")
    out = tmp_path / "tables"
    assert main(["aggregate", "--metrics", *map(str, declared), "--out", str(out)]) == 0
    rows = read_csv(out / "summary.csv")
    assert {(r["method"], r["p"]) for r in rows} == {("symile", "0.5"), ("gated_symile", "0.5")}
    assert "old_method" not in (out / "summary.md").read_text()
    assert "No stage manifests found for the given runs" in (out / "provenance.md").read_text()
    assert "2 runs in 2 cells" in capsys.readouterr().out


@pytest.mark.parametrize("rel", ["xnor/symile/seed0/metrics.json", "xnor/symile/p0.5/s0/metrics.json",
                                 "xnor/symile/p0.5/seed0/other.json"])
def test_a_file_off_the_layout_is_refused(tmp_path, rel, capsys):
    file = tmp_path / rel
    file.parent.mkdir(parents=True)
    file.write_text(json.dumps({"metrics": {"top1": 0.5}}))
    assert main(["aggregate", "--metrics", str(file), "--out", str(tmp_path / "out")]) == 2
    assert "not a run's metrics file" in capsys.readouterr().err


def test_a_run_given_twice_or_bad_numbers_are_refused(tmp_path):
    file = write_run(tmp_path / "runs", "xnor/symile/p0.5/seed0", 0.5)
    with pytest.raises(GatedSymileError, match="the same run"):
        aggregate([file, tmp_path / "runs/xnor/../xnor/symile/p0.5/seed0/metrics.json"], tmp_path / "out")
    file.write_text(json.dumps({"metrics": {"top1": "high"}}))
    with pytest.raises(RecordError, match="metrics.top1 is neither"):
        aggregate([file], tmp_path / "out")


@pytest.fixture
def paired_runs(tmp_path) -> tuple[list[Path], list[Path]]:
    """clip and symile on 4 queries, 2 seeds; symile gains one query per seed."""
    root = tmp_path / "runs"
    metrics, ranks = [], []
    for seed, (clip, symile) in enumerate([([1, 0, 0, 0], [1, 1, 0, 0]), ([0, 1, 0, 0], [0, 1, 1, 0])]):
        for method, correct in (("clip", clip), ("symile", symile)):
            metrics.append(write_run(root, f"mimic/{method}/p0.0/seed{seed}", 0.0, pool=10.0))
            ranks.append(write_ranks(metrics[-1], correct))
    metrics.append(write_run(root, "mimic/symile/p1.0/seed0", 0.0, pool=10.0))  # one seed, no partner
    ranks.append(write_ranks(metrics[-1], [1, 0, 0, 0]))
    return metrics, ranks


def test_contrasts_from_declared_ranks(paired_runs, tmp_path):
    metrics, ranks = paired_runs
    out = tmp_path / "out"
    result = aggregate(metrics, out, ranks=ranks, bootstrap_n=2000)
    assert result["n_contrasts"] == 1
    rows = read_csv(out / "contrasts.csv")
    assert list(rows[0]) == ["dataset", "p", "method_a", "method_b", "diff", "ci_low", "ci_high", "n_queries",
                             "n_seeds", "seed_sd"]
    (row,) = rows
    assert (row["dataset"], row["p"], row["method_a"], row["method_b"]) == ("mimic", "0.0", "symile", "clip")
    assert float(row["diff"]) == pytest.approx(0.25) and row["n_queries"] == "4" and row["n_seeds"] == "2"
    assert float(row["seed_sd"]) == 0.0  # the same gain at both seeds
    assert float(row["ci_low"]) <= 0.25 <= float(row["ci_high"])
    md = (out / "summary.md").read_text()
    assert "| mimic | 0.0 | symile − clip | +0.250 [" in md and "| 4 | 2 | 0.000 |" in md
    again = tmp_path / "again"
    aggregate(metrics, again, ranks=ranks, bootstrap_n=2000)
    assert (again / "contrasts.csv").read_bytes() == (out / "contrasts.csv").read_bytes()


def test_ranks_that_disagree_with_their_metrics_are_refused(paired_runs, tmp_path):
    metrics, ranks = paired_runs
    body = json.loads(metrics[0].read_text())
    body["metrics"]["top1"] = 0.75
    metrics[0].write_text(json.dumps(body))
    with pytest.raises(RecordError, match="not the same evaluation"):
        aggregate(metrics, tmp_path / "out", ranks=ranks)
    with pytest.raises(GatedSymileError, match="without a metrics file"):
        aggregate(metrics[1:], tmp_path / "out", ranks=ranks)
    ranks[1].write_bytes(ranks[1].read_bytes()[:50])  # truncated by a killed job
    with pytest.raises(RecordError, match="ranks.parquet: not a readable"):
        aggregate(metrics[1:], tmp_path / "out", ranks=ranks[1:])


def test_runs_on_other_queries_are_refused(paired_runs, tmp_path):
    import numpy as np

    from gated_symile.evaluation.query_ranks import read_query_ranks, write_query_ranks
    from gated_symile.evaluation.retrieval import QueryRanks

    metrics, ranks = paired_runs
    old = read_query_ranks(ranks[1])
    write_query_ranks(QueryRanks(old.rows + 1, old.ranks, old.pool_sizes), ranks[1])
    with pytest.raises(RecordError, match="test queries differ"):
        aggregate(metrics, tmp_path / "out", ranks=ranks)
    assert np.array_equal(read_query_ranks(ranks[1]).rows, [1, 2, 3, 4])


def test_oracle_columns_from_declared_files(runs, tmp_path):
    oracle_dir = tmp_path / "oracle/xnor"
    oracle_dir.mkdir(parents=True)
    doc = {"oracle_top1": 0.95, "oracle_top1_se": 0.002, "pairwise_oracle_top1": 0.2,
           "pairwise_oracle_top1_se": 0.003, "chance": 1 / 128}
    (oracle_dir / "p0.5.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    aggregate(runs, out, oracle=[oracle_dir / "p0.5.json"])
    rows = {(r["dataset"], r["method"], r["p"]): r for r in read_csv(out / "summary.csv")}
    assert rows[("xnor", "symile", "0.5")]["oracle_top1"] == "0.950000"
    assert rows[("xnor", "gated_symile", "0.5")]["pairwise_oracle_top1"] == "0.200000"
    assert rows[("xnor", "symile", "0.0")]["oracle_top1"] == ""  # no oracle file for p 0
    assert "| xnor | 0.5 | 0.008 | 0.950 | 0.200 |" in (out / "summary.md").read_text()
    (oracle_dir / "p0.5.json").write_text(json.dumps({**doc, "oracle_top1": None}))
    aggregate(runs, out, oracle=[oracle_dir / "p0.5.json"])  # null: not computed for this cell
    del doc["chance"]
    (oracle_dir / "p0.5.json").write_text(json.dumps(doc))
    with pytest.raises(RecordError, match="p0.5.json: missing or non-numeric chance"):
        aggregate(runs, out, oracle=[oracle_dir / "p0.5.json"])
    with pytest.raises(GatedSymileError, match="not an oracle file"):
        aggregate(runs, out, oracle=[tmp_path / "oracle.json"])


def test_workflow_declares_every_metrics_and_ranks_file(tmp_path):
    """The aggregate command names exactly the grid's files (no runs folder to glob)."""
    from tests.test_workflow import TINY
    from tests.workflow_helpers import snakemake

    config = tmp_path / "grid.yaml"
    config.write_text(TINY.read_text().replace("seeds: [0]", "seeds: [0, 1]"))
    stale = tmp_path / "results/runs/xor/symile/p0.5/seed7"
    stale.mkdir(parents=True)
    result = snakemake("-n", "-p", "--cores", "1", "--workflow-profile", "none", "--directory", tmp_path,
                       "--configfile", config, "--forcerun", "aggregate")
    assert result.returncode == 0, result.stdout + result.stderr
    command = next(line for line in result.stdout.splitlines() if "gated-symile aggregate" in line)
    assert "--runs" not in command and "seed7" not in command
    grid = yaml.safe_load(config.read_text())["experiment"]
    n_runs = len(grid["datasets"]) * len(grid["methods"]) * len(grid["p"]) * len(grid["seeds"])
    assert command.count("/metrics.json") == command.count("/ranks.parquet") == n_runs
