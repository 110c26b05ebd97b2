"""Cohort attrition: admissions remaining after each criterion, as a CSV table.

The figure of it is drawn by the aggregation stage
(:func:`gated_symile.reporting.figures.attrition`), with the other figures of the report: the
cohort stage writes tables only, so it neither imports matplotlib nor spends its serial end on a
drawing (0.7 s of a 7 s stage on a 20,000-admission release).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_attrition"]


def write_attrition(
    rows: Sequence[tuple[str, int]], out_dir: str | Path, notes: Sequence[str] = ()
) -> Path:
    """Write ``attrition.csv`` (criterion, remaining, dropped) and, with
    ``notes``, ``attrition_notes.txt`` (one note per line: what the counts cannot show, such as
    how many records were opened)."""
    out_dir = Path(out_dir)
    csv_path = out_dir / "attrition.csv"
    notes_path = out_dir / "attrition_notes.txt"
    if notes:
        notes_path.write_text("".join(f"{note}\n" for note in notes))
    else:
        notes_path.unlink(missing_ok=True)
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["criterion", "remaining", "dropped"])
        previous = rows[0][1] if rows else 0
        for criterion, remaining in rows:
            writer.writerow([criterion, remaining, previous - remaining])
            previous = remaining
    return csv_path
