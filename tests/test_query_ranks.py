"""The per-query ranks file (gated_symile.evaluation.query_ranks): round trip, determinism, damaged files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gated_symile.errors import RecordError
from gated_symile.evaluation.query_ranks import FORMAT, read_query_ranks, write_query_ranks
from gated_symile.evaluation.retrieval import QueryRanks


def sample(n: int = 5) -> QueryRanks:
    return QueryRanks(np.arange(0, 2 * n, 2), np.arange(1, n + 1), np.full(n, n))


def test_round_trip_and_byte_identical_rewrite(tmp_path):
    ranks = sample()
    write_query_ranks(ranks, tmp_path / "a.parquet")
    write_query_ranks(ranks, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    back = read_query_ranks(tmp_path / "a.parquet")
    for name in ("rows", "ranks", "pool_sizes"):
        assert np.array_equal(getattr(back, name), getattr(ranks, name)) and getattr(back, name).dtype == np.int64
    assert not list(tmp_path.glob(".*.tmp"))
    write_query_ranks(QueryRanks(*(np.zeros(0, np.int64),) * 3), tmp_path / "empty.parquet")
    assert read_query_ranks(tmp_path / "empty.parquet").rows.size == 0


def write_table(path, columns: dict, fmt: str | None = FORMAT) -> None:
    table = pa.table(columns)
    if fmt is not None:
        table = table.replace_schema_metadata({b"format": fmt.encode()})
    pq.write_table(table, path)


@pytest.mark.parametrize(
    ("columns", "fmt", "message"),
    [
        ({"query_row": [0], "rank": [1], "pool_size": [2]}, None, "format 'missing'"),
        ({"query_row": [0], "rank": [1]}, FORMAT, "columns"),
        ({"query_row": [0.5], "rank": [1], "pool_size": [2]}, FORMAT, "int64"),
        ({"query_row": [0, None], "rank": [1, 1], "pool_size": [2, 2]}, FORMAT, "int64"),
        ({"query_row": [1, 0], "rank": [1, 1], "pool_size": [2, 2]}, FORMAT, "ascending"),
        ({"query_row": [0, 1], "rank": [1, 3], "pool_size": [2, 2]}, FORMAT, r"\[1, pool_size\]"),
        ({"query_row": [0, 1], "rank": [0, 1], "pool_size": [2, 2]}, FORMAT, r"\[1, pool_size\]"),
    ],
)
def test_a_wrong_table_is_named(tmp_path, columns, fmt, message):
    path = tmp_path / "ranks.parquet"
    write_table(path, columns, fmt)
    with pytest.raises(RecordError, match=message) as info:
        read_query_ranks(path)
    assert str(info.value).startswith(str(path))


@given(st.integers(0, 400), st.binary(max_size=8))
@settings(max_examples=60, deadline=None)
def test_truncated_or_overwritten_bytes_give_a_record_error(tmp_path_factory, cut, junk):
    path = tmp_path_factory.mktemp("r") / "ranks.parquet"
    write_query_ranks(sample(20), path)
    data = path.read_bytes()
    mutated = data[: min(cut, len(data) - 1)] + junk
    assume(mutated != data)
    path.write_bytes(mutated)
    with pytest.raises(RecordError, match="ranks.parquet"):
        read_query_ranks(path)
