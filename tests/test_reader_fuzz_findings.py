"""Reader bugs the byte-wise fuzzer (tests/test_fuzz_readers.py) found, each as a plain test."""

from __future__ import annotations

import pytest

from gated_symile.errors import RecordError
from gated_symile.records.ukb_tables import read_hesin_diag


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
