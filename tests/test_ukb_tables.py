"""UK-Biobank table readers: column spellings, Olink pivot, HES dates, errors, real CardioSoft."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gated_symile.errors import RecordError
from gated_symile.records import read_cardiosoft_xml
from gated_symile.records.ukb_tables import (
    FieldColumn,
    normalize_column,
    parse_column,
    parse_dates,
    pivot_olink,
    read_hesin,
    read_hesin_diag,
    read_main_dataset,
    read_olink_coding,
)
from gated_symile.synthetic.ukb import UkbSynthConfig, generate_ukb
from tests._realdata import realdata


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("23400-0.0", "23400-0.0"),
        ("f.23400.0.0", "23400-0.0"),
        ("p23400_i0", "23400-0.0"),
        ("p23400_i1_a2", "23400-1.2"),
        ("p31", "31-0.0"),
        ("53-1.0", "53-1.0"),
        ('"f.53.1.0"', "53-1.0"),
        ("eid", "eid"),
        ("f.eid", "eid"),
        ("sex", None),
        ("p23400_x0", None),
    ],
)
def test_column_spellings_normalise_to_ukbconv(name, expected):
    assert normalize_column(name) == expected


def test_parse_column_fields():
    assert parse_column("p20205_i2_a1") == FieldColumn(20205, 2, 1)
    assert FieldColumn(53, 0, 0).name == "53-0.0"


MAIN_ROWS = [("1000001", "2008-01-02", "1.5", ""), ("1000002", "", "2.25", "7")]


def write_main(path: Path, names: list[str], sep: str = ",") -> Path:
    lines = [sep.join(names)] + [sep.join(row) for row in MAIN_ROWS]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("names", "sep", "file"),
    [
        (["eid", "53-0.0", "23400-0.0", "23400-1.0"], ",", "main.csv"),
        (["f.eid", "f.53.0.0", "f.23400.0.0", "f.23400.1.0"], "\t", "main.tab"),
        (["eid", "p53_i0", "p23400_i0", "p23400_i1"], ",", "main.csv.gz"),
    ],
)
def test_main_dataset_reads_every_spelling_to_one_frame(tmp_path, names, sep, file):
    frame = read_main_dataset(write_main(tmp_path / file, names, sep))
    assert frame.columns == ["eid", "53-0.0", "23400-0.0", "23400-1.0"]
    assert frame["eid"].to_list() == [1000001, 1000002]
    assert frame["53-0.0"].to_list() == [date(2008, 1, 2), None]
    assert frame["23400-0.0"].to_list() == [1.5, 2.25]
    assert frame["23400-1.0"].to_list() == [None, 7.0]


def test_main_dataset_field_and_instance_selection(tmp_path):
    path = write_main(tmp_path / "m.csv", ["eid", "53-0.0", "23400-0.0", "23400-1.0"])
    assert read_main_dataset(path, fields=[23400], instances=[1]).columns == ["eid", "23400-1.0"]
    assert read_main_dataset(path, fields=[53]).columns == ["eid", "53-0.0"]
    with pytest.raises(RecordError, match=r"no column for field\(s\) \[23401\]"):
        read_main_dataset(path, fields=[23400, 23401])
    with pytest.raises(RecordError, match="at instance"):
        read_main_dataset(path, fields=[53], instances=[1])


def test_main_dataset_errors_name_file_and_problem(tmp_path):
    with pytest.raises(RecordError, match="does not exist") as info:
        read_main_dataset(tmp_path / "absent.csv")
    assert info.value.path.endswith("absent.csv")
    with pytest.raises(RecordError, match="no eid column"):
        read_main_dataset(write_main(tmp_path / "a.csv", ["id", "53-0.0", "23400-0.0", "x"]))
    with pytest.raises(RecordError, match="are both 23400-0.0"):
        read_main_dataset(
            write_main(tmp_path / "b.csv", ["eid", "53-0.0", "23400-0.0", "p23400_i0"])
        )
    bad = tmp_path / "c.csv"
    bad.write_text("eid,23400-0.0\n1,abc\n")
    with pytest.raises(RecordError, match="not a number: 'abc'"):
        read_main_dataset(bad)
    dup = tmp_path / "d.csv"
    dup.write_text("eid,23400-0.0\n1,1\n1,2\n")
    with pytest.raises(RecordError, match="duplicate eid 1"):
        read_main_dataset(dup)


def test_synthetic_release_styles_read_identically(tmp_path):
    frames = []
    for style in ("ukbconv", "r", "rap"):
        out = tmp_path / style
        generate_ukb(out, UkbSynthConfig(participants=60, seed=4, ecg_frac=0.0, main_style=style))
        frames.append(read_main_dataset(out / "ukb_main.csv", instances=[0, 1]))
    assert (
        frames[0].width == 1 + 2 + 1 + 2 * 249 + 2 * 30 + 1
    )  # eid, 31, 34, 53 x2, NMR, biochemistry
    assert frames[0].equals(frames[1]) and frames[0].equals(frames[2])


OLINK = """eid\tins_index\tprotein_id\tresult
20\t0\t7\t1.5
10\t0\t7\t-0.25
10\t2\t3\t9.0
10\t0\t3\t0.5
20\t0\t5\t
30\t2\t5\t4.0
"""


@pytest.mark.parametrize("gz", [False, True])
def test_olink_pivot_instance_zero_ordered_by_protein_id(tmp_path, gz):
    path = tmp_path / ("olink_data.txt.gz" if gz else "olink_data.txt")
    path.write_bytes(gzip.compress(OLINK.encode()) if gz else OLINK.encode())
    wide = pivot_olink(path, 0, batch_rows=2)
    assert wide.eids.tolist() == [10, 20]
    assert wide.protein_ids.tolist() == [3, 5, 7]
    np.testing.assert_array_equal(wide.values, [[0.5, np.nan, -0.25], [np.nan, np.nan, 1.5]])
    imaging = pivot_olink(path, 2)
    assert imaging.eids.tolist() == [10, 30] and imaging.protein_ids.tolist() == [3, 5]


def test_olink_errors(tmp_path):
    dup = tmp_path / "dup.txt"
    dup.write_text(OLINK + "10\t0\t3\t0.7\n")
    with pytest.raises(RecordError, match="duplicate"):
        pivot_olink(dup)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("eid\tins_index\tprotein\tresult\n1\t0\t1\t0.1\n")
    with pytest.raises(RecordError, match=r"missing \['protein_id'\]"):
        pivot_olink(wrong)
    bad = tmp_path / "bad.txt"
    bad.write_text("eid\tins_index\tprotein_id\tresult\n1\t0\t1\tNPX\n")
    with pytest.raises(RecordError, match="cannot read Olink"):
        pivot_olink(bad)
    with pytest.raises(RecordError, match="does not exist"):
        pivot_olink(tmp_path / "none.txt")


def test_olink_coding_splits_abbreviation_and_name(tmp_path):
    path = tmp_path / "coding143.tsv"
    path.write_text(
        "coding\tmeaning\n2\tIL6;Interleukin-6\n1\tAARSD1;Alanyl-tRNA editing protein\n"
    )
    table = read_olink_coding(path)
    assert table.rows() == [
        (1, "AARSD1", "Alanyl-tRNA editing protein"),
        (2, "IL6", "Interleukin-6"),
    ]


HESIN = "eid\tins_index\tdsource\tepistart\tepiend\tadmidate\n"


@pytest.mark.parametrize(
    ("epistart", "admidate"),
    [("05/03/2001", "04/03/2001"), ("2001-03-05", "2001-03-04"), ("05/03/2001", "2001-03-04")],
)
def test_hesin_dates_in_both_formats(tmp_path, epistart, admidate):
    path = tmp_path / "hesin.txt"
    path.write_text(
        HESIN + f"1\t0\tHES\t{epistart}\t\t{admidate}\n1\t1\tHES\t\t\t{admidate}\n2\t0\tSMR\t\t\t\n"
    )
    hesin = read_hesin(path)
    assert hesin["epistart"].to_list() == [date(2001, 3, 5), None, None]
    assert hesin["episode_date"].to_list() == [date(2001, 3, 5), date(2001, 3, 4), None]
    assert hesin["dsource"].to_list() == ["HES", "HES", "SMR"]


def test_hesin_errors(tmp_path):
    path = tmp_path / "hesin.txt"
    path.write_text(HESIN + "1\t0\tHES\t2001/03/05\t\t\n")
    with pytest.raises(RecordError, match="column epistart: unrecognised date '2001/03/05'"):
        read_hesin(path)
    path.write_text("eid\tins_index\tepistart\n1\t0\t\n")
    with pytest.raises(RecordError, match=r"missing column\(s\) \['admidate'\]"):
        read_hesin(path)
    path.write_text(HESIN + "1\t0\tHES\t\t\t\n1\t0\tHES\t\t\t\n")
    with pytest.raises(RecordError, match="duplicate"):
        read_hesin(path)


def test_hesin_diag_codes_are_normalised(tmp_path):
    path = tmp_path / "hesin_diag.txt"
    path.write_text(
        "eid\tins_index\tarr_index\tlevel\tdiag_icd9\tdiag_icd9_nb\tdiag_icd10\tdiag_icd10_nb\n"
        "1\t0\t0\t1\t\t\tE11.9\t\n1\t0\t1\t2\t4019\t\t\t\n1\t0\t2\t2\t\t\ti10\t\n"
    )
    diag = read_hesin_diag(path)
    assert diag["diag_icd10"].to_list() == ["E119", None, "I10"]
    assert diag["level"].to_list() == [1, 2, 2]


def test_parse_dates_accepts_mixed_and_empty():
    out = parse_dates(pl.Series("d", ["2009-01-31", "31/01/2009", "", None]), "f", "d")
    assert out.to_list() == [date(2009, 1, 31), date(2009, 1, 31), None, None]


def test_synthetic_iso_and_dmy_hes_give_the_same_dates(tmp_path):
    tables = []
    for fmt in ("dmy", "iso"):
        generate_ukb(
            tmp_path / fmt,
            UkbSynthConfig(participants=80, seed=6, ecg_frac=0.0, hes_date_format=fmt),
        )
        tables.append(
            read_hesin(tmp_path / fmt / "hesin.txt").select("eid", "ins_index", "episode_date")
        )
    assert tables[0].height > 0 and tables[0].equals(tables[1])
    assert "/" in (tmp_path / "dmy" / "hesin.txt").read_text().splitlines()[1]


@pytest.mark.parametrize(
    "parts",
    [
        ("interface-ecg-cardiosoft", "src", "test", "resources", "Ecg.XML"),
        ("interface-ecg-cardiosoft-mac800", "src", "test", "resources", "000000.XML"),
    ],
)
def test_real_cardiosoft_files_read_with_the_existing_reader(parts):
    path = realdata("onyx-cardiosoft-xml", *parts)
    record = read_cardiosoft_xml(path)
    assert record.signal.shape == (5000, 12)
    assert record.source_format == "cardiosoft-xml"
    assert np.isfinite(record.signal).all()
