"""The run-folder layout is defined once (``gated_symile.layout``) and read back exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gated_symile import layout

ROOT = Path(__file__).resolve().parents[1]
names = st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True)
ps = st.sampled_from(["0.0", "0.5", "1.0", "0.25", "1"])
folds = st.none() | st.integers(0, 99)
seeds = st.integers(0, 10_000)


@given(names, names, ps, folds, seeds)
def test_run_dir_round_trips(dataset: str, method: str, p: str, fold: int | None, seed: int) -> None:
    folder = layout.run_dir(dataset, method, p, fold, seed)
    assert folder.startswith(layout.RUNS_ROOT + "/")
    assert layout.parse_run_dir(folder) == (dataset, method, p, fold, seed)
    assert layout.parse_run_dir("/any/other/root/" + folder.split("/", 2)[2]) == (dataset, method, p, fold, seed)
    cell = layout.cell_name(p, fold, seed)
    assert layout.parse_cell(cell) == (p, None if fold is None else str(fold), seed)
    assert layout.RUN_PATTERN.format(dataset=dataset, method=method, cell=cell) == folder


@pytest.mark.parametrize(
    "folder", ["results/runs/xnor/clip/seed0", "results/runs/xnor/clip/p0.5", "p0.5/seed0", "a/b/pX/seed0"]
)
def test_a_folder_outside_the_layout_is_refused(folder: str) -> None:
    with pytest.raises(ValueError, match="does not end in"):
        layout.parse_run_dir(folder)


def test_the_rules_spell_no_run_folder_themselves() -> None:
    """Every rule file gets run paths from the layout module, so the two cannot drift apart."""
    for rule_file in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        assert "results/runs" not in rule_file.read_text(), rule_file
