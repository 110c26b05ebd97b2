"""Cohort attrition: admissions remaining after each criterion, as a CSV table and a bar chart.

Why both: the CSV is what tests and reports read; the figure is what a person looks at in the
Snakemake report to see which rule removes most admissions.  Both are byte-deterministic (the PNG
carries no software/version metadata).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["attrition_figure", "write_attrition"]


def write_attrition(
    rows: Sequence[tuple[str, int]], out_dir: str | Path, notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``attrition.csv`` (criterion, remaining, dropped), ``attrition.png`` and, with
    ``notes``, ``attrition_notes.txt`` (one note per line: what the counts cannot show, such as
    how many records were opened)."""
    out_dir = Path(out_dir)
    csv_path, png_path = out_dir / "attrition.csv", out_dir / "attrition.png"
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
    _plot(rows, png_path)
    return csv_path, png_path


def _plot(rows: Sequence[tuple[str, int]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = attrition_figure(rows, "admissions remaining", "Symile-MIMIC cohort attrition")
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def attrition_figure(rows: Sequence[tuple[str, int]], xlabel: str, title: str) -> Any:
    """Horizontal bars of the count remaining after each criterion, top to bottom, each labelled.

    One drawing for the cohort stage's ``attrition.png`` and the report's figure
    (``gated_symile.reporting.figures.attrition``); the caller saves and closes it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [criterion for criterion, _ in rows]
    counts = [count for _, count in rows]
    fig, ax = plt.subplots(figsize=(7.0, 0.5 * len(rows) + 1.2), dpi=100)
    positions = list(range(len(rows)))[::-1]
    ax.barh(positions, counts, color="#4c72b0")
    ax.set_yticks(positions, labels)
    top = max(counts, default=0) or 1
    for y, count in zip(positions, counts):
        ax.text(count + 0.01 * top, y, f"{count:,}", va="center", fontsize=9)
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig
