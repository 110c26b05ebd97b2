"""Index of the chest radiographs of either MIMIC-CXR release (docs/data.md §3), as DuckDB tables.

Why one index for two releases: the cohort rules only need, per image, its ids, view, study time
and file path.  The MIMIC-CXR-JPG release ships them in ``mimic-cxr-2.0.0-metadata.csv.gz``; the
DICOM release only lists the files (``cxr-record-list.csv.gz``), so the same fields are read from
each DICOM header (``stop_before_pixels``: no pixel decoding).  Either way the result is the view
``cxr_meta`` with the columns of :data:`CXR_META_COLUMNS`, and the rules never see the difference
except for the ``.jpg``/``.dcm`` extension of ``cxr_path``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gated_symile.errors import RecordError
from gated_symile.data.mimic.parallel import ordered_map
from gated_symile.records.mimic_tables import (
    CXR_CHEXPERT,
    CXR_METADATA,
    CXR_RECORD_LIST,
    load_table,
)

__all__ = [
    "CXR_META_COLUMNS",
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


def register_cxr_tables(con, release: CxrRelease, *, workers: int = 1) -> list[dict]:
    """Create the views ``cxr_meta`` and ``chexpert``; return quarantined images.

    The DICOM release reads the header of every listed image of a subject who has an admission
    (table ``admissions`` must exist); a missing or unreadable file is returned as a quarantine row
    (``level``, ``id``, ``subject_id``, ``reason``) and left out of ``cxr_meta``.
    """
    load_table(con, "chexpert", release.chexpert_file, CXR_CHEXPERT, file_row=True)
    if release.kind == "jpg":
        load_table(con, "cxr_metadata_raw", release.index_file, CXR_METADATA, file_row=True)
        con.execute(
            "CREATE OR REPLACE VIEW cxr_meta AS SELECT dicom_id, subject_id, study_id, "
            "ViewPosition, ViewCodeSequence_CodeMeaning, StudyDate, StudyTime, "
            f"{_jpg_path_sql('.jpg')} AS cxr_path, file_row FROM cxr_metadata_raw"
        )
        return []
    return _register_dicom_headers(con, release, workers)


def _register_dicom_headers(con, release: CxrRelease, workers: int) -> list[dict]:
    import pyarrow as pa

    load_table(con, "cxr_record_list", release.index_file, CXR_RECORD_LIST, file_row=True)
    listed = con.execute(
        f"SELECT dicom_id, subject_id, study_id, coalesce(path, {_jpg_path_sql('.dcm')}), "
        "file_row FROM cxr_record_list "
        "WHERE subject_id IN (SELECT subject_id FROM admissions) ORDER BY file_row"
    ).fetchall()
    headers = ordered_map(
        _read_header_fields, [(str(release.root), row[3]) for row in listed], workers=workers
    )
    rows, quarantined = [], []
    for (dicom_id, subject_id, study_id, path, file_row), fields in zip(listed, headers):
        if isinstance(fields, str):
            quarantined.append(
                {"level": "cxr_image", "id": path, "subject_id": subject_id, "reason": fields}
            )
            continue
        rows.append(
            {
                "dicom_id": dicom_id,
                "subject_id": subject_id,
                "study_id": study_id,
                **fields,
                "cxr_path": path,
                "file_row": file_row,
            }
        )
    schema = pa.schema(
        [
            (name, pa.int64() if name in ("subject_id", "study_id", "file_row") else pa.string())
            for name in CXR_META_COLUMNS
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    con.register("cxr_dicom_headers", table)
    con.execute("CREATE OR REPLACE TABLE cxr_meta AS SELECT * FROM cxr_dicom_headers")
    con.unregister("cxr_dicom_headers")
    return quarantined


def _read_header_fields(task: tuple[str, str]) -> dict[str, str | None] | str:
    """The metadata-CSV fields of one DICOM file, or the reason it cannot be used."""
    import pydicom

    root, path = task
    full = Path(root) / path
    if not full.is_file():
        return "CXR file missing"
    try:
        ds = pydicom.dcmread(full, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is quarantined with its reason
        return f"CXR DICOM header unreadable: {type(exc).__name__}: {exc}"

    view_code = ds.get("ViewCodeSequence")
    return {
        "ViewPosition": _text_or_none(ds.get("ViewPosition")),
        "ViewCodeSequence_CodeMeaning": (
            _text_or_none(view_code[0].get("CodeMeaning")) if view_code else None
        ),
        "StudyDate": _text_or_none(ds.get("StudyDate")),
        "StudyTime": _text_or_none(ds.get("StudyTime")),
    }


def _text_or_none(value) -> str | None:
    """A DICOM value as text, with absent or empty values as ``None`` (an empty CSV field)."""
    text = "" if value is None else str(value).strip()
    return text or None


def file_presence(root: str | Path, paths: list[str]) -> list[bool]:
    """Whether each ``root / path`` is an existing file (the JPG release's "missing image" rule)."""
    root = Path(root)
    return [(root / path).is_file() for path in paths]
