"""Reader throughput: bare wfdb / pydicom calls vs the project's validating readers.

Writes N MIMIC-style WFDB records (fmt 16, gain 200, 12 leads x 5000 samples) and N single-frame
MONOCHROME1 12-bit DICOM radiographs into a temporary folder, then measures records per second for

- ``wfdb.rdrecord(path)``                 vs ``read_wfdb_ecg(path)`` + ``qc_ecg(signal)``
- ``pydicom.dcmread(path).pixel_array``   vs ``read_dicom_image(path)``
- (information only) ``mimic_jpg_pixels`` : the full DICOM -> JPG pixel conversion

Each timing is the best of ``--repeats`` passes over all files (OS file cache warm, as in a
pipeline re-run).  Target: ratio (bare rate / reader rate) <= 1.5.  Prints a table and writes
``benchmarks/out/readers.json``.

    .venv/bin/python benchmarks/bench_readers.py --n 200 --dicom-size 1024
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out" / "readers.json"
LEADS = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


def write_wfdb_records(directory: Path, n: int, seed: int) -> list[Path]:
    import wfdb

    rng = np.random.default_rng(seed)
    stems = []
    for i in range(n):
        name = f"{40000000 + i}"
        digital = rng.integers(-600, 600, size=(5000, 12), dtype=np.int32)
        wfdb.wrsamp(
            name, fs=500, units=["mV"] * 12, sig_name=LEADS, d_signal=digital, fmt=["16"] * 12,
            adc_gain=[200.0] * 12, baseline=[0] * 12, comments=[f"<subject_id>: {10000000 + i}"],
            base_time=datetime(2180, 7, 23, 8, 44).time(), base_date=datetime(2180, 7, 23).date(),
            write_dir=str(directory),
        )  # fmt: skip
        stems.append(directory / name)
    return stems


def write_dicoms(directory: Path, n: int, size: int, seed: int) -> list[Path]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        ds = Dataset()
        ds.SOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(i)])
        ds.Modality, ds.PatientID, ds.ViewPosition = "DX", f"{10000000 + i}", "PA"
        ds.StudyDate, ds.StudyTime = "21800723", "084400.000"
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = rng.integers(0, 4096, size=(size, size), dtype=np.uint16).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = directory / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def best_rate(function: Callable[[Path], object], paths: Sequence[Path], repeats: int) -> float:
    """Records per second of the fastest of ``repeats`` passes."""
    function(paths[0])  # imports and first-call setup are not part of the steady state
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            function(path)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="records and images to generate")
    parser.add_argument("--dicom-size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import pydicom
    import wfdb

    from gated_symile.records import mimic_jpg_pixels, qc_ecg, read_dicom_image, read_wfdb_ecg

    warnings.simplefilter("ignore", DeprecationWarning)  # wfdb's pandas deprecation chatter
    with tempfile.TemporaryDirectory(prefix="bench_readers_") as tmp:
        ecg_dir, cxr_dir = Path(tmp, "ecg"), Path(tmp, "cxr")
        ecg_dir.mkdir()
        cxr_dir.mkdir()
        stems = write_wfdb_records(ecg_dir, args.n, args.seed)
        dicoms = write_dicoms(cxr_dir, args.n, args.dicom_size, args.seed)

        rows = [
            (
                "wfdb ECG",
                best_rate(lambda p: wfdb.rdrecord(str(p)), stems, args.repeats),
                best_rate(lambda p: qc_ecg(read_wfdb_ecg(p).signal), stems, args.repeats),
            ),
            (
                f"DICOM {args.dicom_size}^2",
                best_rate(lambda p: pydicom.dcmread(p).pixel_array, dicoms, args.repeats),
                best_rate(read_dicom_image, dicoms, args.repeats),
            ),
        ]
        conversion_rate = best_rate(mimic_jpg_pixels, dicoms, args.repeats)

    results = {
        "n": args.n,
        "dicom_size": args.dicom_size,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "target_ratio_max": 1.5,
        "rows": [
            {"reader": name, "bare_per_s": bare, "ours_per_s": ours, "ratio": bare / ours}
            for name, bare, ours in rows
        ],
        "mimic_jpg_pixels_per_s": conversion_rate,
    }
    print(f"{'reader':<16}{'bare rec/s':>12}{'ours rec/s':>12}{'ratio':>8}")
    for row in results["rows"]:
        print(
            f"{row['reader']:<16}{row['bare_per_s']:>12.1f}{row['ours_per_s']:>12.1f}"
            f"{row['ratio']:>8.2f}"
        )
    print(f"{'DICOM->JPG px':<16}{'':>12}{conversion_rate:>12.1f}   (mimic_jpg_pixels, info)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
