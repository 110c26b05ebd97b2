"""Per-query retrieval ranks of one evaluation, written beside its ``metrics.json``.

Why a file of its own: comparing two methods needs their outcomes on the *same* test queries
(paired differences, :mod:`gated_symile.reporting.contrasts`); means and intervals alone cannot give that.
The key of a query is its row in the evaluated split, which is the same for every method and seed
of one (dataset, p, fold): the tensors and the misalignment manifest do not depend on the model.
It is never a subject or admission id, so the file holds no record-level identifier.

Format (``gated-symile-query-ranks/1``): a Parquet table with the int64 columns ``query_row``
(unique, ascending), ``rank`` (1-based, after the seeded tie-break) and ``pool_size`` (candidates
the query was ranked among), zstd-compressed, no pandas index: byte-identical for equal ranks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gated_symile.errors import RecordError
from gated_symile.evaluation.retrieval import QueryRanks
from gated_symile.outputs import atomic_path

FORMAT = "gated-symile-query-ranks/1"
COLUMNS: tuple[str, ...] = ("query_row", "rank", "pool_size")
_FORMAT_KEY = b"format"


def write_query_ranks(ranks: QueryRanks, out: Path) -> None:
    """Write atomically (temporary file + rename) so a killed job never leaves half a table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = (ranks.rows, ranks.ranks, ranks.pool_sizes)
    table = pa.table({c: pa.array(np.asarray(a, dtype=np.int64)) for c, a in zip(COLUMNS, arrays, strict=True)})
    table = table.replace_schema_metadata({_FORMAT_KEY: FORMAT.encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_query_ranks(path: Path) -> QueryRanks:
    """Read and validate one ranks file; any damage is a :class:`RecordError` naming it."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise RecordError(path, f"not a readable per-query ranks table ({exc})") from exc
    found = (table.schema.metadata or {}).get(_FORMAT_KEY, b"").decode(errors="replace")
    if found != FORMAT:
        raise RecordError(path, f"format {found or 'missing'!r}, expected {FORMAT!r}")
    if tuple(table.column_names) != COLUMNS:
        raise RecordError(path, f"columns {table.column_names}, expected {list(COLUMNS)}")
    try:
        rows, ranks, pool = (table.column(c).to_numpy().astype(np.int64, casting="safe") for c in COLUMNS)
    except (TypeError, ValueError) as exc:  # nulls or non-integer columns
        raise RecordError(path, f"columns must be non-null int64 ({exc})") from exc
    if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0):
        raise RecordError(path, "query_row must be non-negative and strictly ascending")
    if rows.size and (ranks.min() < 1 or np.any(ranks > pool)):
        raise RecordError(path, "every rank must lie in [1, pool_size]")
    return QueryRanks(rows, ranks, pool)
