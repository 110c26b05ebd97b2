"""``read_frame(..., also=...)`` reads only the named columns of a wide parquet table."""

from __future__ import annotations

import pandas as pd
import pytest

from gated_symile.errors import RecordError
from gated_symile.intermediates import read_frame


@pytest.fixture()
def wide(tmp_path):
    path = tmp_path / "wide.parquet"
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5], "label": [1.0, 0.0]}).to_parquet(path)
    return path


def test_also_reads_only_needed_and_present_optional_columns(wide):
    frame = read_frame(wide, columns=["c", "a"], also=["label", "absent"])
    assert list(frame.columns) == ["a", "c", "label"]  # file order
    assert frame["label"].tolist() == [1.0, 0.0]
    assert frame.equals(read_frame(wide)[["a", "c", "label"]])


def test_also_still_refuses_a_missing_required_column(wide):
    with pytest.raises(RecordError, match="lacks the columns"):
        read_frame(wide, columns=["a", "missing"], also=[])


def test_without_also_every_column_is_read(wide):
    assert list(read_frame(wide, columns=["a"]).columns) == ["a", "b", "c", "label"]
