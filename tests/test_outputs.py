"""Atomic output files (``gated_symile.outputs``) are readable as any file the user writes."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from gated_symile.evaluation.query_ranks import write_query_ranks
from gated_symile.evaluation.retrieval import QueryRanks
from gated_symile.outputs import write_bytes


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_files_get_the_mode_open_gives(tmp_path, umask):
    """A temporary file renamed into place must not keep ``mkstemp``'s 0600: manifests, tables and
    checkpoints in a shared project folder would be unreadable by the project's group."""
    previous = os.umask(umask)
    try:
        (tmp_path / "plain").write_bytes(b"x")
        write_bytes(tmp_path / "atomic", b"x")
        ones = np.ones(2, dtype=np.int64)
        write_query_ranks(QueryRanks(np.arange(2), ones, ones), tmp_path / "ranks.parquet")
    finally:
        os.umask(previous)
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert expected == 0o666 & ~umask
    for name in ("atomic", "ranks.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_parquet_groups_of_long_values_do_not_depend_on_the_batches(tmp_path):
    """Values long enough to fill a data page: the writer may break pages where the reader's
    batches break, so the same rows must still give the same bytes (the group is combined)."""
    import pyarrow as pa

    from gated_symile.outputs import ROWS_PER_GROUP, write_parquet_groups

    rows = ROWS_PER_GROUP * 2 + 808
    table = pa.table({"row": pa.array(range(rows), pa.int64()), "text": [f"{i:05d}" * 60 for i in range(rows)]})
    written = set()
    for size in (rows, 1000, 777):
        path = tmp_path / f"batches-of-{size}.parquet"
        write_parquet_groups(path, pa.RecordBatchReader.from_batches(table.schema, table.to_batches(size)))
        written.add(path.read_bytes())
    assert len(written) == 1
