"""The ECG records the Symile-MIMIC rule consumes, checked in the rule's order and no further.

The rule (docs/data.md §4) takes, per admission, the earliest ECG inside [-24 h, +24 h] that passes QC.
The reference script QCs every listed record first (about 800 000 at real scale, most of them
nowhere near an inpatient admission) and then selects.  Here the candidates are selected by time
in SQL first (``cohort_rules.build_ecg_candidates``) and checked in *rounds*: round ``k`` checks
the ``k``-th candidate of every admission whose earlier candidates all failed.  Each round is
checked in parallel, in blocks of at most :data:`ROWS_PER_CHECK` records; a record shared by two
admissions is checked once.  The records opened are exactly those the sequential rule reads, so
the chosen ECG is the one the check-everything rule chooses, whatever the number of workers: every
candidate before it was checked and failed, and it passed.

Records outside every window, and candidates after an admission's first valid one, are never
opened and so never appear in the exclusions table (the attrition notes say so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gated_symile.data.mimic.ecg_qc_scan import check_records
from gated_symile.data.mimic.parallel import RecordPool
from gated_symile.provenance.read_set import active
from gated_symile.records.mimic_tables import store_arrow

__all__ = ["NO_PATH", "ROWS_PER_CHECK", "EcgScan", "consume_candidates", "scan_ecg_candidates"]

NO_PATH = "ECG record has no path in record_list.csv"

ROWS_PER_CHECK = 8192
"""Most records one ``check`` call gets.  Why a bound: the first round of a 50,000-admission
release checks ~40,000 records, and their paths, reasons and results held as Python objects at
once raised the QC's peak by ~10 MB (244 against 232-235 MB), so the stage's peak memory grew with
the release; a block of this size still gives every worker several work items
(:func:`gated_symile.data.mimic.parallel.chunk_size`), and smaller ones (2,048) saved nothing more."""

_UNCHECKED, _PASSED, _REJECTED = 0, 1, 2


def consume_candidates(
    hadm_id: np.ndarray,
    file_row: np.ndarray,
    check: Callable[[list[int]], Sequence[str | None]],
    *,
    rows_per_check: int = ROWS_PER_CHECK,
) -> tuple[dict[int, str], int]:
    """Check candidates in rank order until each admission has a valid one or none is left.

    ``hadm_id`` / ``file_row`` list the candidates sorted by (admission, rank).  ``check`` gets
    the not yet checked file rows of one round (ascending, at most ``rows_per_check`` per call)
    and returns a reason per row (``None`` = valid).  Returns the reason of every rejected row
    and the number of rounds; the state of every candidate record is one byte, not a Python
    object, so what a round holds does not grow with the release.
    """
    hadm_id, file_row = np.asarray(hadm_id), np.asarray(file_row, dtype=np.int64)
    rejected: dict[int, str] = {}
    if hadm_id.size == 0:
        return rejected, 0
    distinct, record = np.unique(file_row, return_inverse=True)  # candidate -> its distinct record
    state = np.full(distinct.size, _UNCHECKED, dtype=np.int8)
    starts = np.flatnonzero(np.r_[True, hadm_id[1:] != hadm_id[:-1]])
    counts = np.diff(np.r_[starts, hadm_id.size])
    unresolved = np.ones(starts.size, dtype=bool)
    rounds = 0
    for rank in range(int(counts.max())):
        live = np.flatnonzero(unresolved & (counts > rank))
        if live.size == 0:
            break
        records = record[starts[live] + rank]
        new = np.unique(records[state[records] == _UNCHECKED])
        rounds += bool(new.size)
        for first in range(0, new.size, rows_per_check):
            block = new[first : first + rows_per_check]
            rows = distinct[block].tolist()
            reasons = check(rows)
            valid = np.fromiter((reason is None for reason in reasons), bool, len(rows))
            state[block] = np.where(valid, _PASSED, _REJECTED)
            rejected.update((row, reason) for row, reason in zip(rows, reasons) if reason is not None)
        unresolved[live[state[records] == _PASSED]] = False
    return rejected, rounds


@dataclass
class EcgScan:
    """Outcome of the ECG checks: rejected rows (file_row, subject_id, id, reason, problem) in file
    order (``problem``: the kind of reason, :data:`ecg_qc_scan.ECG_MISSING` ...), and the counts
    the attrition notes and the log report."""

    rejected: list[tuple[int, int, str, str, str]] = field(default_factory=list)
    listed: int = 0
    candidates: int = 0
    opened: int = 0
    rounds: int = 0


def scan_ecg_candidates(con, root, pool: RecordPool, rule: str) -> EcgScan:
    """QC the candidates of table ``ecg_candidates`` as the rule consumes them; creates table
    ``ecg_rejected(file_row, reason, problem)``.  While a stage records its reads, each record's
    files are hashed by the worker that read them and noted in the read set."""
    import pyarrow as pa

    ranked = con.execute(
        "SELECT hadm_id, file_row FROM ecg_candidates ORDER BY hadm_id, sort_key"
    ).fetchnumpy()
    records = _CandidateRecords(con)
    read_set = active()
    problems: dict[int, str] = {}
    scan = EcgScan(listed=con.execute("SELECT count(*) FROM ecg_list").fetchall()[0][0])
    scan.candidates = records.count

    def check(rows: list[int]) -> list[str | None]:
        paths = records.paths(rows)
        readable = [(row, path) for row, path in zip(rows, paths) if path]
        results = check_records(
            pool, root, [path for _, path in readable], rule=rule, hash_files=read_set is not None
        )
        verdicts: dict[int, str | None] = {}
        for (row, _), result in zip(readable, results):  # folded as they arrive
            verdicts[row] = result.reason
            if result.problem:
                problems[row] = result.problem
            if read_set is not None:
                read_set.add_opened(root, result.opened)
        scan.opened += len(readable)
        return [verdicts.get(row, NO_PATH) for row in rows]

    reasons, scan.rounds = consume_candidates(ranked["hadm_id"], ranked["file_row"], check)
    rejected = sorted(reasons)
    for row, subject_id, path in zip(rejected, records.subjects(rejected), records.paths(rejected)):
        record = path or f"record_list row {row}"
        scan.rejected.append((row, subject_id, record, reasons[row], problems.get(row, NO_PATH)))
    table = pa.table(
        {
            "file_row": pa.array([r[0] for r in scan.rejected], pa.int64()),
            "reason": pa.array([r[3] for r in scan.rejected], pa.string()),
            "problem": pa.array([r[4] for r in scan.rejected], pa.string()),
        }
    )
    store_arrow(con, "CREATE OR REPLACE TABLE ecg_rejected AS", table)
    return scan


class _CandidateRecords:
    """Subject and path of each distinct candidate record, held as columns sorted by file row.

    Why columns: at 50,000 admissions there are ~60,000 candidates, and a dict of Python tuples
    (ints and path strings) held ~15 MB through the whole QC; one Arrow string array and two
    integer arrays hold the same in a quarter of that, and a round makes Python strings only for
    the records it checks.
    """

    def __init__(self, con) -> None:
        table = con.sql(
            "SELECT DISTINCT file_row, subject_id, path FROM ecg_candidates ORDER BY file_row"
        ).to_arrow_table()
        self._file_row = table.column("file_row").to_numpy()
        self._subject_id = table.column("subject_id").to_numpy()
        self._path = table.column("path").combine_chunks()
        self.count = table.num_rows

    def _index(self, rows: list[int]) -> np.ndarray:
        return np.searchsorted(self._file_row, np.asarray(rows, dtype=self._file_row.dtype))

    def paths(self, rows: list[int]) -> list[str | None]:
        """Each row's record path (``None``: the listing gives none)."""
        return self._path.take(self._index(rows)).to_pylist()

    def subjects(self, rows: list[int]) -> list[int]:
        return [int(subject) for subject in self._subject_id[self._index(rows)]]
