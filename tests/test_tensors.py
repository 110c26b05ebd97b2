"""tensors stage on a tiny raw set: WFDB records (wfdb.wrsamp), JPG/DICOM radiographs, a cohort."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gated_symile.data.imaging import prepare_cxr
from gated_symile.data.mimic.tensors import normalize_ecg
from gated_symile.records.lead_names import MIMIC_LEAD_ORDER

N_ADMISSIONS = 24
CXR_SIZE = 32


def _write_ecg(root: Path, rel: str, signal: np.ndarray) -> None:
    import wfdb

    folder = root / Path(rel).parent
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        Path(rel).name, fs=500, units=["mV"] * 12, sig_name=list(MIMIC_LEAD_ORDER),
        p_signal=signal, fmt=["16"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12,
        write_dir=str(folder),
    )  # fmt: skip


def _write_dicom(path: Path, pixels: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path.name)])
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.set_pixel_data(pixels, "MONOCHROME2", 12)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """ecg/ and cxr/ roots plus cohort.parquet; one radiograph is a DICOM, one ECG is constant."""
    from gated_symile.data.mimic.labs import LAB_COLUMNS
    from gated_symile.records.mimic_tables import CHEXPERT_LABELS

    root = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_ADMISSIONS):
        subject = 10_000_000 + i
        ecg_rel = f"files/p1000/p{subject}/s{40_000_000 + i}/{40_000_000 + i}"
        signal = np.cumsum(rng.normal(0, 0.02, (5000, 12)), axis=0).round(3)
        if i == 5:
            signal = np.full((5000, 12), 0.25)  # constant record -> zeros, not a division by zero
        _write_ecg(root / "ecg", ecg_rel, signal)
        height, width = (int(rng.integers(36, 60)), int(rng.integers(36, 60)))
        image = (np.cumsum(rng.integers(0, 7, (height, width)), axis=1) % 256).astype(np.uint8)
        suffix = ".dcm" if i == 3 else ".jpg"
        cxr_rel = f"files/p10/p{subject}/s{50_000_000 + i}/img{i}{suffix}"
        cxr_file = root / "cxr" / cxr_rel
        if suffix == ".dcm":
            _write_dicom(cxr_file, image.astype(np.uint16) * 16)
        else:
            cxr_file.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(cxr_file, quality=95)
        rows.append({"subject_id": subject, "hadm_id": 20_000_000 + i, "cxr_path": cxr_rel,
                     "ecg_path": ecg_rel})  # fmt: skip
    cohort = pd.DataFrame(rows)
    for label in CHEXPERT_LABELS:
        cohort[label] = rng.choice([1.0, 0.0, -1.0, np.nan], size=N_ADMISSIONS)
    labs = rng.normal(size=(N_ADMISSIONS, len(LAB_COLUMNS)))
    labs[rng.random(labs.shape) < 0.3] = np.nan
    cohort = pd.concat([cohort, pd.DataFrame(labs, columns=list(LAB_COLUMNS))], axis=1)
    cohort.to_parquet(root / "cohort.parquet", index=False)

    from gated_symile.cli import main

    code = main(["splits", "mimic", "--cohort", str(root / "cohort.parquet"),
                 "--out", str(root / "splits"), "--train-n", "14", "--val-n", "5"])  # fmt: skip
    assert code == 0
    return root


def _run_tensors(raw: Path, out: Path, workers: int = 1, cxr: Path | None = None) -> int:
    from gated_symile.cli import main

    return main([
        "tensors", "mimic", "--splits", str(raw / "splits"), "--ecg", str(raw / "ecg"),
        "--cxr", str(cxr or raw / "cxr"), "--out", str(out), "--cxr-size", str(CXR_SIZE),
        "--seed", "3", "--workers", str(workers),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def tensors(raw) -> Path:
    assert _run_tensors(raw, raw / "tensors") == 0
    return raw / "tensors"


def test_shapes_dtypes_and_metadata(raw, tensors):
    meta = json.loads((tensors / "metadata.json").read_text())
    assert meta["format"] == "gated-symile-tensors/1"
    assert meta["dataset"] == "mimic" and meta["target"] == "cxr"
    assert meta["modalities"] == ["ecg", "labs", "cxr"] and meta["protocol"] == "candidates"
    assert meta["inputs"]["cxr"] == {
        "kind": "image_uint8", "shape": [CXR_SIZE, CXR_SIZE], "normalize": "imagenet"
    }  # fmt: skip
    assert meta["inputs"]["ecg"]["shape"] == [1, 5000, 12]
    assert meta["inputs"]["labs"]["shape"] == [100]
    assert meta["seeds"] == {"split": 0, "cxr_crop": 3}
    assert set(meta["sources"]) >= {"train.parquet", "val.parquet", "test.parquet"}
    assert sum(meta["splits"].values()) <= N_ADMISSIONS
    for name, n in meta["splits"].items():
        folder = tensors / name
        ecg = np.load(folder / "ecg.npy", mmap_mode="r")
        cxr = np.load(folder / "cxr.npy", mmap_mode="r")
        labs = np.load(folder / "labs.npy")
        index = pd.read_parquet(folder / "index.parquet")
        assert ecg.shape == (n, 1, 5000, 12) and ecg.dtype == np.float32
        assert cxr.shape == (n, CXR_SIZE, CXR_SIZE) and cxr.dtype == np.uint8
        assert labs.shape == (n, 100) and labs.dtype == np.float32
        assert np.abs(ecg).max() <= 1.0 and np.isfinite(ecg).all()
        assert ((labs[:, :50] >= 0) & (labs[:, :50] <= 1)).all()
        assert set(np.unique(labs[:, 50:])) <= {0.0, 1.0}
        split = pd.read_parquet(raw / "splits" / f"{name}.parquet")
        np.testing.assert_array_equal(index["sample_id"], split["hadm_id"])
        assert index["sample_id"].dtype == np.int64
        assert list(index.columns[:2]) == ["sample_id", "subject_id"] and "Edema" in index
        if name == "train":
            assert not (folder / "candidates.npy").exists()
        else:
            np.testing.assert_array_equal(
                np.load(folder / "candidates.npy"),
                np.load(raw / "splits" / f"candidates_{name}.npy"),
            )


def test_rows_equal_the_recipe_applied_to_the_raw_files(raw, tensors):
    import wfdb

    from gated_symile.records.mimic_jpg import mimic_jpg_pixels

    for name in ("train", "val", "test"):
        split = pd.read_parquet(raw / "splits" / f"{name}.parquet")
        ecg = np.load(tensors / name / "ecg.npy", mmap_mode="r")
        cxr = np.load(tensors / name / "cxr.npy", mmap_mode="r")
        labs = np.load(tensors / name / "labs.npy")
        for row, record in enumerate(split.itertuples()):
            p_signal = wfdb.rdrecord(str(raw / "ecg" / record.ecg_path)).p_signal
            np.testing.assert_array_equal(ecg[row], normalize_ecg(p_signal))
            if record.hadm_id == 20_000_005:
                assert (ecg[row] == 0).all()
            else:
                assert ecg[row].min() == -1.0 and ecg[row].max() == 1.0
            path = raw / "cxr" / record.cxr_path
            gray = mimic_jpg_pixels(path) if path.suffix == ".dcm" else np.asarray(Image.open(path))
            rng = np.random.default_rng([3, row]) if name == "train" else None
            np.testing.assert_array_equal(cxr[row], prepare_cxr(gray, CXR_SIZE, rng))
            lab0 = split.columns.get_loc("50802_percentile")
            assert labs[row, 0] == split.iat[row, lab0]


def test_byte_identical_across_runs_and_worker_counts(raw, tensors, tmp_path):
    assert _run_tensors(raw, tmp_path / "again", workers=2) == 0
    from gated_symile.provenance.hashing import is_manifest

    files = sorted(
        p.relative_to(tensors) for p in tensors.rglob("*") if p.is_file() and not is_manifest(p)
    )
    assert len(files) == 1 + 3 * 4 + 2
    for rel in files:
        assert (tensors / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel


def test_undecodable_radiograph_is_an_error_naming_the_file(raw, tmp_path, capsys):
    import shutil

    broken = tmp_path / "cxr"
    shutil.copytree(raw / "cxr", broken)
    victim = sorted(broken.rglob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    assert _run_tensors(raw, tmp_path / "out", cxr=broken) == 2
    assert str(victim) in capsys.readouterr().err


def test_normalize_ecg_constant_and_range():
    assert (normalize_ecg(np.full((5000, 12), 3.0)) == 0).all()
    signal = np.linspace(-2, 6, 5000 * 12).reshape(5000, 12)
    out = normalize_ecg(signal)
    assert out.shape == (1, 5000, 12) and out.dtype == np.float32
    assert out.min() == -1.0 and out.max() == 1.0


@pytest.mark.slow
def test_generator_cohort_splits_tensors_end_to_end(tmp_path):
    """synth mimic -> cohort mimic -> splits mimic -> tensors mimic on ~40 admissions; the DICOM
    release gives the JPG release's tensors up to JPEG loss."""
    from gated_symile.cli import main
    from gated_symile.data.mimic.splits import file_sha256

    raw, cohort, splits = tmp_path / "raw", tmp_path / "cohort", tmp_path / "splits"
    assert (
        main(["synth", "mimic", "--out", str(raw), "--admissions", "60", "--image-size", "64"]) == 0
    )
    assert main(["cohort", "mimic", "--mimic-iv", str(raw / "mimic-iv"),
                 "--ecg", str(raw / "mimic-iv-ecg"), "--cxr", str(raw / "mimic-cxr-jpg"),
                 "--out", str(cohort)]) == 0  # fmt: skip
    assert main(["splits", "mimic", "--cohort", str(cohort / "cohort.parquet"),
                 "--out", str(splits)]) == 0  # fmt: skip
    common = ["tensors", "mimic", "--ecg", str(raw / "mimic-iv-ecg"), "--cxr-size", "32"]
    assert main([*common, "--splits", str(splits), "--cxr", str(raw / "mimic-cxr-jpg"),
                 "--out", str(tmp_path / "jpg")]) == 0  # fmt: skip

    cohort_rows = pd.read_parquet(cohort / "cohort.parquet")
    split_meta = json.loads((splits / "metadata.json").read_text())
    meta = json.loads((tmp_path / "jpg" / "metadata.json").read_text())
    assert meta["cohort_sha256"] == file_sha256(cohort / "cohort.parquet")
    dropped = sum(split_meta["dropped_patient_overlap"].values())
    assert sum(meta["splits"].values()) + dropped == len(cohort_rows) >= 20
    seen = []
    for name, n in meta["splits"].items():
        index = pd.read_parquet(tmp_path / "jpg" / name / "index.parquet")
        seen += index["sample_id"].tolist()
        ecg = np.load(tmp_path / "jpg" / name / "ecg.npy")
        assert ecg.shape == (n, 1, 5000, 12) and np.abs(ecg).max() <= 1
        assert np.load(tmp_path / "jpg" / name / "cxr.npy").std() > 0
    assert len(set(seen)) == len(seen) and set(seen) <= set(cohort_rows["hadm_id"])

    swapped = tmp_path / "splits_dcm"
    swapped.mkdir()
    for path in splits.iterdir():
        if path.name.endswith(".parquet") and path.stem in ("train", "val", "test"):
            frame = pd.read_parquet(path)
            frame["cxr_path"] = frame["cxr_path"].str.replace(".jpg", ".dcm", regex=False)
            frame.to_parquet(swapped / path.name, index=False)
        else:
            (swapped / path.name).write_bytes(path.read_bytes())
    assert main([*common, "--splits", str(swapped), "--cxr", str(raw / "mimic-cxr"),
                 "--out", str(tmp_path / "dcm")]) == 0  # fmt: skip
    for name in meta["splits"]:
        jpg = np.load(tmp_path / "jpg" / name / "cxr.npy").astype(int)
        dcm = np.load(tmp_path / "dcm" / name / "cxr.npy").astype(int)
        assert np.abs(jpg - dcm).max() <= 4  # JPEG q95 loss only
        np.testing.assert_array_equal(
            np.load(tmp_path / "jpg" / name / "ecg.npy"),
            np.load(tmp_path / "dcm" / name / "ecg.npy"),
        )


def test_split_table_folded_in_blocks_gives_the_same_tensors(raw, tensors, tmp_path, monkeypatch):
    """The split tables are read a few rows at a time (bounded memory); the blocks, and the
    decoding chunks cut at their edges, change no byte of the arrays."""
    import gated_symile.data.mimic.tensors as stage

    monkeypatch.setattr(stage, "ROWS_PER_GROUP", 3)
    assert _run_tensors(raw, tmp_path / "blocks") == 0
    for split in ("train", "val", "test"):
        for name in ("ecg.npy", "cxr.npy", "labs.npy"):
            assert (tensors / split / name).read_bytes() == (tmp_path / "blocks" / split / name).read_bytes()
        pd.testing.assert_frame_equal(
            pd.read_parquet(tensors / split / "index.parquet"),
            pd.read_parquet(tmp_path / "blocks" / split / "index.parquet"),
        )


def test_non_finite_lab_names_its_row_of_the_split_table(raw, tmp_path, monkeypatch, capsys):
    """Checked block by block, the error still names the row of the file, not of the block."""
    import shutil

    import gated_symile.data.mimic.tensors as stage

    splits = tmp_path / "splits"
    shutil.copytree(raw / "splits", splits)
    table = pd.read_parquet(splits / "train.parquet")
    table.loc[9, "50802_percentile"] = np.inf
    table.to_parquet(splits / "train.parquet", index=False)
    monkeypatch.setattr(stage, "ROWS_PER_GROUP", 4)
    from gated_symile.cli import main

    code = main(["tensors", "mimic", "--splits", str(splits), "--ecg", str(raw / "ecg"), "--cxr", str(raw / "cxr"),
                 "--out", str(tmp_path / "out"), "--cxr-size", str(CXR_SIZE)])  # fmt: skip
    assert code == 2
    assert f"{splits / 'train.parquet'}: row 9 holds NaN or infinite values" in capsys.readouterr().err
