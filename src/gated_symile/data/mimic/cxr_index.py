"""Index of the chest radiographs of either MIMIC-CXR release (docs/data.md §3), as DuckDB tables.

Why one index for two releases: the cohort rules only need, per image, its ids, view, study time
and file path.  The MIMIC-CXR-JPG release ships them in ``mimic-cxr-2.0.0-metadata.csv.gz``; the
DICOM release only lists the files (``cxr-record-list.csv.gz``), so the same fields are read from
each DICOM header (``stop_before_pixels``: no pixel decoding).  Either way the result is the view
``cxr_meta`` with the columns of :data:`CXR_META_COLUMNS`, and the rules never see the difference
except for the ``.jpg``/``.dcm`` extension of ``cxr_path``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gated_symile.errors import RecordError
from gated_symile.data.mimic.parallel import RecordPool
from gated_symile.provenance.read_set import OpenedFile, active
from gated_symile.records.mimic_tables import (
    CXR_CHEXPERT,
    CXR_METADATA,
    CXR_RECORD_LIST,
    load_table,
    number_blocks,
    store_arrow,
)

__all__ = [
    "CXR_META_COLUMNS",
    "CXR_MISSING",
    "CXR_UNREADABLE",
    "CxrRelease",
    "detect_cxr_release",
    "file_presence",
    "register_cxr_tables",
]

CXR_META_COLUMNS: tuple[str, ...] = (
    "dicom_id",
    "subject_id",
    "study_id",
    "ViewPosition",
    "ViewCodeSequence_CodeMeaning",
    "StudyDate",
    "StudyTime",
    "cxr_path",
    "file_row",
)

CXR_MISSING = "CXR file missing"
CXR_UNREADABLE = "unreadable image"
"""The kinds of problem of a quarantined image: an admission whose only possible AP/PA images
had one is excluded naming it (``cohort_rules.decide_admissions``)."""


@dataclass(frozen=True)
class CxrRelease:
    """Which release ``root`` holds and where its index and CheXpert tables are."""

    kind: str  # "jpg" | "dicom"
    root: Path
    index_file: Path
    chexpert_file: Path


def detect_cxr_release(root: str | Path, chexpert: str | Path | None = None) -> CxrRelease:
    """Recognise the release from its files; ``chexpert`` overrides the labels file."""
    root = Path(root)
    if not root.is_dir():
        raise RecordError(root, "CXR root folder not found")
    metadata = root / CXR_METADATA.filename
    record_list = root / CXR_RECORD_LIST.filename
    if metadata.is_file():
        kind, index_file = "jpg", metadata
    elif record_list.is_file():
        kind, index_file = "dicom", record_list
    else:
        raise RecordError(
            root,
            f"not a MIMIC-CXR release: expected {CXR_METADATA.filename} (MIMIC-CXR-JPG) or "
            f"{CXR_RECORD_LIST.filename} (DICOM release)",
        )
    labels = Path(chexpert) if chexpert is not None else root / CXR_CHEXPERT.filename
    if not labels.is_file():
        hint = "" if chexpert is not None else " (pass --chexpert FILE for the DICOM release)"
        raise RecordError(labels, f"CheXpert labels file not found{hint}")
    return CxrRelease(kind, root, index_file, labels)


def _jpg_path_sql(extension: str) -> str:
    sid = "CAST(subject_id AS VARCHAR)"
    return (
        f"'files/p' || left({sid}, 2) || '/p' || {sid} || '/s' || CAST(study_id AS VARCHAR)"
        f" || '/' || dicom_id || '{extension}'"
    )


def register_cxr_tables(con, release: CxrRelease, pool: RecordPool | None = None) -> list[dict]:
    """Create the views ``cxr_meta``, ``chexpert`` and ``cxr_unreadable``; return quarantined
    images.

    The DICOM release reads the header of every listed image of a subject who has an admission
    (table ``adm`` must exist), on ``pool`` (this process when ``None``); a missing or
    unreadable file is returned as a quarantine row (``level``, ``id``, ``subject_id``,
    ``reason``), left out of ``cxr_meta`` and listed in ``cxr_unreadable`` (``file_row``,
    ``subject_id``, ``study_id``, ``problem``: :data:`CXR_MISSING` or :data:`CXR_UNREADABLE`),
    since its view and time are unknown.  The JPG release's index needs no file read, so its
    ``cxr_unreadable`` is empty.
    """
    load_table(con, "chexpert", release.chexpert_file, CXR_CHEXPERT, file_row=True)
    if release.kind == "jpg":
        load_table(con, "cxr_metadata_raw", release.index_file, CXR_METADATA, file_row=True)
        con.execute(
            "CREATE OR REPLACE VIEW cxr_meta AS SELECT dicom_id, subject_id, study_id, "
            "ViewPosition, ViewCodeSequence_CodeMeaning, StudyDate, StudyTime, "
            f"{_jpg_path_sql('.jpg')} AS cxr_path, file_row FROM cxr_metadata_raw"
        )
        _register_unreadable(con, [])
        return []
    with RecordPool(1) if pool is None else nullcontext(pool) as workers:
        return _register_dicom_headers(con, release, workers)


HEADER_BLOCK = 2048
"""DICOM files whose headers are read, and inserted into ``cxr_meta``, per block: the release's
377,000 images are never held as Python rows at once (the stage's peak memory grew with them).
Blocks of 8,192 (a dict per image, the listing's tuples and the header results) still held ~15 MB
at once: the 50,000-admission release's stage peaked at 251 MB against 237-239 MB with this size,
in the same time."""
_HEADERS_AHEAD = 32
"""Files of a work item whose headers are read ahead together, while the block before is parsed."""


def _register_dicom_headers(con, release: CxrRelease, pool: RecordPool) -> list[dict]:
    import pyarrow as pa

    load_table(con, "cxr_record_list", release.index_file, CXR_RECORD_LIST, file_row=True)
    schema = pa.schema(
        [
            (name, pa.int64() if name in ("subject_id", "study_id", "file_row") else pa.string())
            for name in CXR_META_COLUMNS
        ]
    )
    store_arrow(con, "CREATE OR REPLACE TABLE cxr_meta AS", pa.Table.from_pylist([], schema=schema))
    quarantined, unreadable = [], []
    for listed in _listed_dicom_blocks(con):
        rows = _read_dicom_block(release.root, listed, pool, quarantined, unreadable)
        store_arrow(con, "INSERT INTO cxr_meta", pa.Table.from_pylist(rows, schema=schema))
    _register_unreadable(con, unreadable)
    return quarantined


def _listed_dicom_blocks(con) -> Iterator[list[tuple]]:
    """The listed images of subjects with an admission, in file order, :data:`HEADER_BLOCK` rows
    at a time: (dicom_id, subject_id, study_id, path, file_row)."""
    blocks = number_blocks(
        con,
        "cxr_listed",
        f"SELECT dicom_id, subject_id, study_id, coalesce(path, {_jpg_path_sql('.dcm')}) AS path, "
        "file_row FROM cxr_record_list WHERE subject_id IN (SELECT subject_id FROM adm)",
        "file_row",
        HEADER_BLOCK,
    )
    for block in range(blocks):
        yield con.execute(
            "SELECT dicom_id, subject_id, study_id, path, file_row FROM cxr_listed "
            "WHERE block = ? ORDER BY file_row",
            [block],
        ).fetchall()


def _read_dicom_block(
    root: Path, listed: list[tuple], pool: RecordPool, quarantined: list[dict], unreadable: list[dict]
) -> list[dict]:
    """The ``cxr_meta`` rows of one block of listed images, their headers read on ``pool``; an
    image that cannot be used goes to ``quarantined`` and ``unreadable`` instead."""
    read_set = active()
    headers = pool.map_chunks(
        partial(_read_header_chunk, str(root), read_set is not None), [row[3] for row in listed]
    )
    if read_set is not None:
        read_set.add_opened(root, (opened for _, opened in headers if opened is not None))
    rows = []
    for (dicom_id, subject_id, study_id, path, file_row), (fields, _) in zip(listed, headers):
        if isinstance(fields, str):
            quarantined.append(
                {"level": "cxr_image", "id": path, "subject_id": subject_id, "reason": fields}
            )
            problem = CXR_MISSING if fields == CXR_MISSING else CXR_UNREADABLE
            unreadable.append(
                {"file_row": file_row, "subject_id": subject_id, "study_id": study_id,
                 "problem": problem}
            )  # fmt: skip
            continue
        rows.append(
            {"dicom_id": dicom_id, "subject_id": subject_id, "study_id": study_id, **fields,
             "cxr_path": path, "file_row": file_row}
        )  # fmt: skip
    return rows


def _register_unreadable(con, rows: list[dict]) -> None:
    """Table ``cxr_unreadable`` from ``rows`` (see :func:`register_cxr_tables`)."""
    import pyarrow as pa

    schema = pa.schema(
        [("file_row", pa.int64()), ("subject_id", pa.int64()), ("study_id", pa.int64()),
         ("problem", pa.string())]
    )  # fmt: skip
    store_arrow(con, "CREATE OR REPLACE TABLE cxr_unreadable AS", pa.Table.from_pylist(rows, schema=schema))


HeaderFields = dict[str, str | None]


def _read_header_chunk(
    root: str, hash_bytes: bool, paths: list[str]
) -> list[tuple[HeaderFields | str, OpenedFile | None]]:
    """Each file's :func:`_read_header_fields`, the next block's headers read ahead meanwhile
    (a release read from disk: docs/data.md "Reading records from disk")."""
    from gated_symile.records.dicom_fast_header import FIRST_READ
    from gated_symile.records.read_ahead import blocks_read_ahead

    full = [(os.path.join(root, path),) for path in paths]
    return [
        _read_header_fields(root, paths[row], hash_bytes)
        for rows, _ in blocks_read_ahead(full, _HEADERS_AHEAD, FIRST_READ)
        for row in rows
    ]


def _read_header_fields(
    root: str, path: str, hash_bytes: bool = False
) -> tuple[HeaderFields | str, OpenedFile | None]:
    """The metadata-CSV fields of one DICOM file, or the reason it cannot be used; with
    ``hash_bytes`` also the file as read (:func:`_header_read`), from the same parse.

    The header reader checks the file is a complete image (not empty, not truncated, pixel data
    present), so a file cut after its file meta is quarantined as an unreadable image instead of
    being indexed with blank tags.
    """
    from gated_symile.records.dicom_header import read_dicom_header_and_bytes
    from gated_symile.records.errors import MissingRecord

    full = os.path.join(root, path)
    try:
        tags, header, stat = read_dicom_header_and_bytes(full)
    except MissingRecord:
        return CXR_MISSING, None
    except RecordError as exc:
        return f"{CXR_UNREADABLE}: {exc.problem}", None
    fields = {
        name: _text_or_none(tags[name])
        for name in ("ViewPosition", "ViewCodeSequence_CodeMeaning", "StudyDate", "StudyTime")
    }
    return fields, _header_read(path, header, stat) if hash_bytes else None


def _header_read(rel: str, header: bytes, stat: os.stat_result) -> OpenedFile:
    """The file as the index used it: the sha256 of its header up to the pixel data
    (``header_length``), so the audit names a changed header without hashing every image."""
    digest = hashlib.sha256(header).hexdigest()
    return OpenedFile(rel, stat.st_size, stat.st_mtime_ns, digest, len(header))


def _text_or_none(value) -> str | None:
    """A DICOM value as text, with absent or empty values as ``None`` (an empty CSV field)."""
    text = "" if value is None else str(value).strip()
    return text or None


def file_presence(root: str | Path, paths: list[str]) -> list[bool]:
    """Whether each ``root / path`` is an existing file (the JPG release's "missing image" rule);
    noted as existence checks in the read set while a stage records.  (``os.path``: half the
    cost of ``pathlib`` per file, which counts over the tens of thousands of candidates.)"""
    folder = os.fspath(root)
    present = [os.path.isfile(os.path.join(folder, path)) for path in paths]
    read_set = active()
    if read_set is not None:
        read_set.add_checked(root, paths, present)
    return present
