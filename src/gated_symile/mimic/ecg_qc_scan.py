"""ECG quality control of every record listed in ``record_list.csv`` (docs/data.md §4 "ECG QC").

Why before selection: the reference drops bad records first, so a NaN or all-zero earliest ECG lets
the next valid one in the window be chosen.  An unreadable or missing record is not a crash: it is
quarantined with its reason like a failed QC, and the cohort goes on without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gated_symile.data.mimic.parallel import ordered_map

__all__ = ["EcgQcTask", "qc_record", "scan_ecg_records"]


@dataclass(frozen=True)
class EcgQcTask:
    """One record to check: ``root / path`` is the WFDB record path without extension."""

    root: str
    path: str
    rule: str = "symile"


def qc_record(task: EcgQcTask) -> str | None:
    """Reason the record is excluded, or ``None`` when it passes QC under ``task.rule``."""
    from gated_symile.errors import RecordError
    from gated_symile.records.ecg_qc import qc_ecg
    from gated_symile.records.errors import MissingRecord
    from gated_symile.records.wfdb_ecg import read_wfdb_ecg

    try:
        record = read_wfdb_ecg(Path(task.root) / task.path)
    except MissingRecord:
        return f"ECG record missing: {task.path}"
    except RecordError as exc:
        return f"ECG record unreadable: {exc.problem}"
    except Exception as exc:  # noqa: BLE001 -- a broken file must quarantine, never stop the cohort
        return f"ECG record unreadable: {type(exc).__name__}: {exc}"
    return qc_ecg(record.signal).reject_reason(rule=task.rule)


def scan_ecg_records(
    root: str | Path, paths: Sequence[str], *, rule: str = "symile", workers: int = 1
) -> list[str | None]:
    """QC every record of ``paths`` (relative to ``root``); one reason or ``None`` per path, in order."""
    tasks = [EcgQcTask(str(root), str(path), rule) for path in paths]
    return ordered_map(qc_record, tasks, workers=workers)
