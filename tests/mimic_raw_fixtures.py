"""Tiny hand-made MIMIC raw releases (hosp tables, ECG records, CXR index) for cohort tests.

Every table is written with the exact headers of docs/data.md §1-§3 so the real readers run on it; ECG
records are real WFDB files (``wfdb.wrsamp``); radiographs are empty ``.jpg`` files (the cohort only
checks that they exist) or tiny DICOMs for the DICOM release.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from gated_symile.records.lead_names import MIMIC_LEAD_ORDER
from gated_symile.records.mimic_tables import CHEXPERT_LABELS

PATIENTS_HEADER = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
ADMISSIONS_HEADER = [
    "subject_id",
    "hadm_id",
    "admittime",
    "dischtime",
    "deathtime",
    "admission_type",
    "admit_provider_id",
    "admission_location",
    "discharge_location",
    "insurance",
    "language",
    "marital_status",
    "race",
    "edregtime",
    "edouttime",
    "hospital_expire_flag",
]
LABEVENTS_HEADER = [
    "labevent_id",
    "subject_id",
    "hadm_id",
    "specimen_id",
    "itemid",
    "order_provider_id",
    "charttime",
    "storetime",
    "value",
    "valuenum",
    "valueuom",
    "ref_range_lower",
    "ref_range_upper",
    "flag",
    "priority",
    "comments",
]
ECG_HEADER = ["subject_id", "study_id", "file_name", "ecg_time", "path"]
CXR_METADATA_HEADER = [
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
CHEXPERT_HEADER = ["subject_id", "study_id", *CHEXPERT_LABELS]
LEADS = list(MIMIC_LEAD_ORDER)
FMT = "%Y-%m-%d %H:%M:%S"


def write_csv(path: Path, header: list[str], rows: list[list], *, gz: bool = True) -> Path:
    """CSV with empty fields for None, quoting only where needed (like pandas ``to_csv``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    return path


def ecg_signal(kind: str, seed: int = 0) -> np.ndarray:
    """(5000, 12) mV signal: ``ok`` (sines), ``nan`` (one NaN sample) or ``zero``."""
    if kind == "zero":
        return np.zeros((5000, 12))
    t = np.arange(5000) / 500.0
    sig = np.stack([np.sin(2 * np.pi * (1 + 0.1 * k) * t + seed) for k in range(12)], axis=1)
    if kind == "nan":
        sig[100, 3] = np.nan
    return sig


def write_wfdb(root: Path, subject_id: int, study_id: int, when: datetime, kind: str) -> str:
    """Write one MIMIC-IV-ECG record; returns its ``path`` column (relative, no extension)."""
    import wfdb

    sid = str(subject_id)
    rel = f"files/p{sid[:4]}/p{sid}/s{study_id}/{study_id}"
    if kind == "missing":
        return rel
    record_dir = root / Path(rel).parent
    record_dir.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        record_name=str(study_id),
        fs=500,
        units=["mV"] * 12,
        sig_name=LEADS,
        p_signal=ecg_signal(kind, seed=study_id % 7),
        fmt=["16"] * 12,
        adc_gain=[200.0] * 12,
        baseline=[0] * 12,
        base_time=when.time(),
        base_date=when.date(),
        comments=[f"<subject_id>: {subject_id}"],
        write_dir=str(record_dir),
    )
    return rel


def study_time(when: datetime, fraction: str = ".531") -> str:
    """``StudyTime`` as the metadata CSV writes it: float ``HHMMSS.fff`` without leading zeros."""
    return str(int(when.strftime("%H%M%S"))) + fraction


@dataclass
class RawWorld:
    """A small raw MIMIC world; ``write(root)`` lays out the three release folders."""

    patients: list[list] = field(default_factory=list)
    admissions: list[list] = field(default_factory=list)
    labs: list[list] = field(default_factory=list)
    ecgs: list[tuple[int, int, datetime, str]] = field(default_factory=list)
    cxrs: list[dict] = field(default_factory=list)
    chexpert: list[list] = field(default_factory=list)

    def add_admission(self, subject_id: int, hadm_id: int, admittime: datetime) -> None:
        if not any(row[0] == subject_id for row in self.patients):
            self.patients.append([subject_id, "F", 60, 2180, "2014 - 2016", None])
        self.admissions.append(
            [
                subject_id,
                hadm_id,
                admittime.strftime(FMT),
                (admittime + timedelta(days=5)).strftime(FMT),
                None,
                "EW EMER.",
                "P12345",
                "EMERGENCY ROOM",
                "HOME",
                "Medicare",
                "ENGLISH",
                "MARRIED",
                "WHITE",
                None,
                None,
                0,
            ]
        )

    def add_lab(
        self,
        subject_id: int,
        itemid: int,
        when: datetime,
        valuenum: float | None,
        *,
        value: str | None = None,
        hadm_id: int | None = None,
        comments: str | None = None,
    ) -> None:
        text = value if value is not None else (None if valuenum is None else f"{valuenum:g}")
        self.labs.append(
            [
                len(self.labs) + 1,
                subject_id,
                hadm_id,
                9000 + len(self.labs),
                itemid,
                None,
                when.strftime(FMT),
                when.strftime(FMT),
                text,
                valuenum,
                "mg/dL",
                None,
                None,
                None,
                "ROUTINE",
                comments,
            ]
        )

    def add_ecg(self, subject_id: int, study_id: int, when: datetime, kind: str = "ok") -> None:
        self.ecgs.append((subject_id, study_id, when, kind))

    def add_cxr(
        self,
        subject_id: int,
        study_id: int,
        dicom_id: str,
        when: datetime,
        view: str | None = "PA",
        *,
        present: bool = True,
        fraction: str = ".531",
        chexpert: bool = True,
    ) -> None:
        self.cxrs.append(
            {
                "subject_id": subject_id,
                "study_id": study_id,
                "dicom_id": dicom_id,
                "when": when,
                "view": view,
                "present": present,
                "fraction": fraction,
            }
        )
        if chexpert and not any(row[1] == study_id for row in self.chexpert):
            labels = [float((study_id + k) % 3 - 1) for k in range(14)]
            labels[3] = None
            self.chexpert.append([subject_id, study_id, *labels])

    def write(self, root: Path, *, release: str = "jpg") -> dict[str, Path]:
        """Write everything under ``root``; ``release`` is ``"jpg"`` or ``"dicom"``."""
        hosp = root / "mimic-iv" / "hosp"
        write_csv(hosp / "patients.csv.gz", PATIENTS_HEADER, self.patients)
        write_csv(hosp / "admissions.csv.gz", ADMISSIONS_HEADER, self.admissions)
        write_csv(hosp / "labevents.csv.gz", LABEVENTS_HEADER, self.labs)
        ecg_root = root / "mimic-iv-ecg"
        ecg_rows = []
        for subject_id, study_id, when, kind in self.ecgs:
            rel = write_wfdb(ecg_root, subject_id, study_id, when, kind)
            ecg_rows.append([subject_id, study_id, study_id, when.strftime(FMT), rel])
        write_csv(ecg_root / "record_list.csv", ECG_HEADER, ecg_rows, gz=False)
        return {
            "mimic_iv": root / "mimic-iv",
            "ecg": ecg_root,
            "cxr": self.write_cxr(root, release),
        }

    def write_cxr(self, root: Path, release: str = "jpg") -> Path:
        """Write only the CXR release (with the CheXpert file at its root); returns the root."""
        cxr_root = root / ("mimic-cxr-jpg" if release == "jpg" else "mimic-cxr")
        write_csv(cxr_root / "mimic-cxr-2.0.0-chexpert.csv.gz", CHEXPERT_HEADER, self.chexpert)
        if release == "jpg":
            self._write_jpg_release(cxr_root)
        else:
            self._write_dicom_release(cxr_root)
        return cxr_root

    def _rel(self, image: dict, extension: str) -> str:
        sid = str(image["subject_id"])
        return f"files/p{sid[:2]}/p{sid}/s{image['study_id']}/{image['dicom_id']}{extension}"

    def _write_jpg_release(self, cxr_root: Path) -> None:
        rows = []
        for image in self.cxrs:
            when = image["when"]
            rows.append(
                [
                    image["dicom_id"],
                    image["subject_id"],
                    image["study_id"],
                    "CHEST (PA AND LAT)",
                    image["view"],
                    2544,
                    3056,
                    when.strftime("%Y%m%d"),
                    study_time(when, image["fraction"]),
                    "CHEST (PA AND LAT)",
                    "postero-anterior",
                    "Erect",
                ]
            )
            if image["present"]:
                path = cxr_root / self._rel(image, ".jpg")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
        write_csv(cxr_root / "mimic-cxr-2.0.0-metadata.csv.gz", CXR_METADATA_HEADER, rows)

    def _write_dicom_release(self, cxr_root: Path) -> None:
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

        rows = []
        for image in self.cxrs:
            rel = self._rel(image, ".dcm")
            rows.append([image["subject_id"], image["study_id"], image["dicom_id"], rel])
            if not image["present"]:
                continue
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.PatientID = str(image["subject_id"])
            ds.Modality = "DX"
            ds.StudyDate = image["when"].strftime("%Y%m%d")
            ds.StudyTime = image["when"].strftime("%H%M%S") + image["fraction"]
            if image["view"] is not None:
                ds.ViewPosition = image["view"]
            code = Dataset()
            code.CodeMeaning = "postero-anterior"
            ds.ViewCodeSequence = [code]
            ds.Rows, ds.Columns = 4, 4
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.PixelRepresentation = 0
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit = 7
            ds.PixelData = np.zeros((4, 4), np.uint8).tobytes()
            path = cxr_root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
        write_csv(
            cxr_root / "cxr-record-list.csv.gz",
            ["subject_id", "study_id", "dicom_id", "path"],
            rows,
        )
