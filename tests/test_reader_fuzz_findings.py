"""Reader bugs the byte-wise fuzzer (tests/test_fuzz_readers.py) found, each as a plain test."""

from __future__ import annotations

import gzip

import duckdb
import pytest

from gated_symile.errors import RecordError
from gated_symile.records.mimic_tables import PATIENTS, load_table, read_header, register_table
from gated_symile.records.ukb_tables import read_hesin_diag, read_main_dataset

PATIENTS_TEXT = b"subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n1,F,50,2180,x,\n"


def _corrupt_deflate(tmp_path):
    data = bytearray(gzip.compress(PATIENTS_TEXT * 20, mtime=0))
    data[10] |= 0x06  # first deflate block header: BTYPE 11, an invalid block type
    path = tmp_path / "patients.csv.gz"
    path.write_bytes(bytes(data))
    return path


def test_corrupt_deflate_data_is_a_record_error_not_zlib_error(tmp_path):
    path = _corrupt_deflate(tmp_path)
    with pytest.raises(RecordError, match=r"patients\.csv\.gz: cannot read: .*decompress"):
        read_header(path)
    with pytest.raises(RecordError, match="cannot read"):
        load_table(duckdb.connect(), "p", path, PATIENTS)


def test_header_without_line_break_is_not_read_to_the_end(tmp_path):
    path = tmp_path / "patients.csv.gz"
    path.write_bytes(gzip.compress(b"x" * (3 << 20), mtime=0))  # 3 MiB, one line
    with pytest.raises(RecordError, match="no line break in the first 1048576 bytes"):
        read_header(path)
    main = tmp_path / "ukb_main.csv.gz"
    main.write_bytes(gzip.compress(b"eid," + b"y" * (3 << 20), mtime=0))
    with pytest.raises(RecordError, match="no line break in the first 1048576 characters"):
        read_main_dataset(main)


def test_view_over_a_file_that_vanished_after_its_header_was_read(tmp_path, monkeypatch):
    from gated_symile.records import mimic_tables

    header = PATIENTS_TEXT.decode().splitlines()[0].split(",")
    monkeypatch.setattr(mimic_tables, "read_header", lambda path: header)  # the file is gone
    with pytest.raises(RecordError, match=r"gone\.csv: cannot parse as a MIMIC table: IO Error"):
        register_table(duckdb.connect(), "p", tmp_path / "gone.csv", PATIENTS)


def test_polars_multi_line_message_becomes_one_line(tmp_path):
    path = tmp_path / "hesin_diag.txt"
    path.write_text(
        "eid\tins_index\tarr_index\tlevel\tdiag_icd10\n1\t0\t0\t1\tI10\n2\t0\t0\t1\tK21\textra\n"
    )
    with pytest.raises(RecordError) as caught:
        read_hesin_diag(path)
    assert "\n" not in str(caught.value) and "cannot read table" in caught.value.problem


def test_record_error_problem_is_one_line():
    error = RecordError("f.csv", "first line\n\nsecond  line\t")
    assert error.problem == "first line second line"
    assert str(error) == "f.csv: first line second line"


# ------------------------------------------------------------------ CardioSoft XML


@pytest.fixture
def cardiosoft(tmp_path):
    """A CardioSoft file from the synthetic UKB writer; returns (path, text)."""
    from gated_symile.synthetic.ukb.ecg_xml import write_cardiosoft_ecg

    path = tmp_path / "1000001_20205_2_0.xml"
    write_cardiosoft_ecg((str(path), 0, 0, 1000001, 0.2, 1))
    return path, path.read_text()


def _set_strip_value(text: str, tag: str, value: str) -> str:
    import re

    strip = text.index("<StripData>")
    match = re.compile(rf"(<{tag}[^>]*>)[^<]*(<)").search(text, strip)
    return text[: match.end(1)] + value + text[match.start(2) :]


@pytest.mark.parametrize(
    ("tag", "value", "problem"),
    [
        ("SampleRate", "nan", "StripData SampleRate is not a finite number: 'nan'"),
        ("Resolution", "inf", "StripData Resolution is not a finite number: 'inf'"),
        ("ChannelSampleCountTotal", "1e999", "StripData ChannelSampleCountTotal is not an integer"),
        ("ChannelSampleCountTotal", "nan", "StripData ChannelSampleCountTotal is not an integer"),
        (
            "ChannelSampleCountTotal",
            "5000.5",
            "StripData ChannelSampleCountTotal is not an integer",
        ),
    ],
)
def test_non_finite_or_fractional_strip_numbers_are_unreadable(cardiosoft, tag, value, problem):
    from gated_symile.records import read_cardiosoft_xml

    path, text = cardiosoft
    assert read_cardiosoft_xml(path).fs == 500
    path.write_text(_set_strip_value(text, tag, value))
    with pytest.raises(RecordError) as caught:
        read_cardiosoft_xml(path)
    assert caught.value.problem.startswith(problem)


def test_sample_beyond_64_bits_is_unreadable(cardiosoft):
    from gated_symile.records import read_cardiosoft_xml

    path, text = cardiosoft
    lead = '<WaveformData lead="I">'
    start = text.index(lead, text.index("<StripData>")) + len(lead)
    first = text.index(",", start)  # replace the first sample, keep the count
    path.write_text(text[:start] + "99999999999999999999" + text[first:])
    with pytest.raises(RecordError, match="lead I: non-integer sample"):
        read_cardiosoft_xml(path)


# ------------------------------------------------------------------ UKB tab-separated tables


@pytest.mark.parametrize("eid", ['"eid"', " eid", "eid "])
def test_hesin_header_name_that_only_looks_like_eid_is_a_missing_column(tmp_path, eid):
    from gated_symile.records.ukb_tables import read_hesin

    path = tmp_path / "hesin.txt"
    path.write_text(f"{eid}\tins_index\tepistart\tadmidate\n1\t0\t01/02/2005\t\n")
    with pytest.raises(RecordError, match=r"hesin\.txt: missing column\(s\) \['eid'\]"):
        read_hesin(path)


def test_header_row_with_a_lone_carriage_return_is_a_record_error(tmp_path):
    path = tmp_path / "labevents.csv.gz"
    path.write_bytes(gzip.compress(b"labevent_id,subject_id,\ritemid\n1,2,3\n", mtime=0))
    with pytest.raises(RecordError, match=r"labevents\.csv\.gz: cannot parse the header row"):
        read_header(path)
