"""UK-Biobank-style tables: non-finite NMR and Olink values are missing values, and counted.

``inf``, ``-inf`` and ``1e999`` parse as floats, so they used to reach the feature tables as
observed extreme values (and then the z-score statistics of every participant).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gated_symile.synthetic.ukb import UkbSynthConfig, generate_ukb
from gated_symile.data.ukb.cohort import UkbCohortConfig, build_ukb_cohort


def _set_cells(path: Path, separator: str, cells: dict[tuple[int, str], str]) -> None:
    """Overwrite ``{(data row index, column): text}`` in a delimited text file."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter=separator))
    header = rows[0]
    for (row, column), text in cells.items():
        rows[row + 1][header.index(column)] = text
    with path.open("w", newline="") as handle:
        csv.writer(handle, delimiter=separator, lineterminator="\n").writerows(rows)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ukb_non_finite")
    raw = root / "raw"
    synth = UkbSynthConfig(participants=40, seed=1, olink_frac=0.5, ecg_frac=0.0, n_proteins=5,
                           empty_frac=0.0, no_baseline_frac=0.0)  # fmt: skip
    generate_ukb(raw, synth)
    main = pl.read_csv(raw / "ukb_main.csv", infer_schema=False)
    with_nmr = [i for i, v in enumerate(main["23400-0.0"].to_list()) if v]
    rows = {"nmr_a": with_nmr[0], "nmr_b": with_nmr[1]}
    _set_cells(raw / "ukb_main.csv", ",", {
        (rows["nmr_a"], "23400-0.0"): "inf",
        (rows["nmr_a"], "23401-0.0"): "-inf",
        (rows["nmr_b"], "23402-0.0"): "1e999",
    })  # fmt: skip
    olink = pl.read_csv(raw / "olink_data.txt", separator="\t", infer_schema=False)
    first = olink.row(0, named=True)
    _set_cells(raw / "olink_data.txt", "\t", {(0, "result"): "-1e999"})
    out = root / "out"
    build_ukb_cohort(UkbCohortConfig(raw=raw, out=out, n_folds=2))
    return {
        "main": main,
        "rows": rows,
        "olink_first": first,
        "out": out,
        "exclusions": pl.read_parquet(out / "exclusions.parquet"),
        "summary": json.loads((out / "summary.json").read_text()),
    }


def test_feature_tables_hold_no_infinite_value(built):
    for name in ("nmr", "olink"):
        values = pl.read_parquet(built["out"] / f"{name}.parquet").drop("eid").to_numpy()
        assert not np.isinf(values).any(), name
    nmr = pl.read_parquet(built["out"] / "nmr.parquet")
    eid_a = int(built["main"]["eid"][built["rows"]["nmr_a"]])
    row = nmr.filter(pl.col("eid") == eid_a)
    assert row["23400-0.0"].is_nan().all() and row["23401-0.0"].is_nan().all()
    assert row["23403-0.0"].is_not_nan().all()  # the participant's other values stay


def test_each_non_finite_value_is_an_exclusion_row_and_counted(built):
    values = built["exclusions"].filter(pl.col("level") == "value").sort("id")
    main, rows = built["main"], built["rows"]
    eid_a, eid_b = (int(main["eid"][rows[k]]) for k in ("nmr_a", "nmr_b"))
    expected_nmr = {
        f"{eid_a}:23400-0.0": "non-finite NMR value inf treated as missing",
        f"{eid_a}:23401-0.0": "non-finite NMR value -inf treated as missing",
        f"{eid_b}:23402-0.0": "non-finite NMR value inf treated as missing",
    }
    got = dict(values.select("id", "reason").iter_rows())
    assert {k: v for k, v in got.items() if "NMR" in v} == expected_nmr
    olink = {k: v for k, v in got.items() if "Olink" in v}
    assert list(olink.values()) == ["non-finite Olink value -inf treated as missing"]
    assert next(iter(olink)).startswith(f"{built['olink_first']['eid']}:")
    counts = built["summary"]["exclusions"]
    assert counts["non-finite NMR value inf treated as missing"] == 2
    assert counts["non-finite NMR value -inf treated as missing"] == 1
    assert counts["non-finite Olink value -inf treated as missing"] == 1
