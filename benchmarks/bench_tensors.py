"""Records/s per core of the tensors stage's per-record work versus the bare decoders.

Writes MIMIC-like files once (12-lead format-16 WFDB records; grayscale q95 JPEGs and 12-bit DICOMs
at MIMIC-CXR size), then times on one core:

* ECG: ``wfdb.rdrecord`` (bare) vs ``read_wfdb_ecg`` + ``normalize_ecg`` (pipeline);
* CXR JPG: ``Image.open().convert("L")`` (bare) vs ``read_jpg_gray`` (decode) vs decode + resize +
  crop (full pipeline, 320 px);
* CXR DICOM: ``dcmread().pixel_array`` (bare) vs ``mimic_jpg_pixels`` (decode + MIMIC-CXR-JPG
  conversion) vs + resize + crop.

Target: pipeline decode within 1.5x of the bare decode; resize/crop is reported separately because
it is extra work the bare decode does not do.  Prints a table, writes benchmarks/out/tensors.json.

    .venv/bin/python benchmarks/bench_tensors.py [--ecg-n 200] [--cxr-n 12] [--height 3056 --width 2544]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

LEADS = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


def write_files(work: Path, ecg_n: int, cxr_n: int, height: int, width: int) -> dict[str, list]:
    import wfdb
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(0)
    ecg_paths, jpg_paths, dcm_paths = [], [], []
    for i in range(ecg_n):
        folder = work / "ecg" / f"s{i}"
        folder.mkdir(parents=True, exist_ok=True)
        signal = np.cumsum(rng.normal(0, 0.02, (5000, 12)), axis=0).round(3)
        wfdb.wrsamp(
            str(i), fs=500, units=["mV"] * 12, sig_name=LEADS, p_signal=signal, fmt=["16"] * 12,
            adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(folder),
        )  # fmt: skip
        ecg_paths.append(folder / str(i))
    yy, xx = np.mgrid[0:height, 0:width]
    base = 2000 + 800 * np.sin(yy / 300.0) * np.cos(xx / 250.0)
    for i in range(cxr_n):
        pixels = np.clip(base + rng.normal(0, 60, base.shape), 0, 4095).astype(np.uint16)
        jpg = work / "cxr" / f"{i}.jpg"
        jpg.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels >> 4).astype(np.uint8)).save(jpg, quality=95)
        jpg_paths.append(jpg)
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(i)])
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "DX"
        ds.set_pixel_data(pixels, "MONOCHROME2", 12)
        dcm = work / "cxr" / f"{i}.dcm"
        ds.save_as(dcm, enforce_file_format=True)
        dcm_paths.append(dcm)
    return {"ecg": ecg_paths, "jpg": jpg_paths, "dcm": dcm_paths}


def rates(
    funcs: dict[str, Callable[[Path], object]], paths: Sequence[Path], repeats: int
) -> dict[str, float]:
    """Best-of-``repeats`` records/s per function; the functions take turns in every round so that
    load from other processes on a shared machine hits them alike (one warm-up call each first)."""
    for func in funcs.values():
        func(paths[0])
    best = {name: float("inf") for name in funcs}
    for _ in range(repeats):
        for name, func in funcs.items():
            start = time.perf_counter()
            for path in paths:
                func(path)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(paths) / seconds for name, seconds in best.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecg-n", type=int, default=200)
    parser.add_argument("--cxr-n", type=int, default=12)
    parser.add_argument("--height", type=int, default=3056, help="radiograph rows (MIMIC ~3000)")
    parser.add_argument("--width", type=int, default=2544)
    parser.add_argument("--cxr-size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="keep the generated files here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/tensors.json"))
    args = parser.parse_args(argv)

    import pydicom
    import wfdb
    from PIL import Image

    from gated_symile.data.imaging import prepare_cxr
    from gated_symile.data.mimic.tensors import normalize_ecg
    from gated_symile.records.jpg_cxr import read_jpg_gray
    from gated_symile.records.mimic_jpg import mimic_jpg_pixels
    from gated_symile.records.wfdb_ecg import read_wfdb_ecg

    with tempfile.TemporaryDirectory(prefix="bench_tensors_") as tmp:
        work = args.work or Path(tmp)
        files = write_files(work, args.ecg_n, args.cxr_n, args.height, args.width)
        size, r = args.cxr_size, args.repeats

        def bare_jpg(p):
            with Image.open(p) as image:
                return np.asarray(image.convert("L"))

        measured = {
            "ecg": rates(
                {
                    "bare": lambda p: wfdb.rdrecord(str(p)).p_signal,
                    "decode": lambda p: read_wfdb_ecg(p).signal,
                    "full": lambda p: normalize_ecg(read_wfdb_ecg(p).signal),
                },
                files["ecg"],
                r,
            ),
            "cxr_jpg": rates(
                {
                    "bare": bare_jpg,
                    "decode": read_jpg_gray,
                    "full": lambda p: prepare_cxr(read_jpg_gray(p), size),
                },
                files["jpg"],
                r,
            ),
            "cxr_dicom": rates(
                {
                    "bare": lambda p: pydicom.dcmread(p).pixel_array,
                    "decode": mimic_jpg_pixels,
                    "full": lambda p: prepare_cxr(mimic_jpg_pixels(p), size),
                },
                files["dcm"],
                r,
            ),
        }

    print(f"{'modality':<10} {'bare rec/s':>11} {'decode rec/s':>13} {'full rec/s':>11} "
          f"{'decode/bare':>12} {'full/bare':>10}")  # fmt: skip
    for name, m in measured.items():
        m["slowdown_decode"] = m["bare"] / m["decode"]
        m["slowdown_full"] = m["bare"] / m["full"]
        print(
            f"{name:<10} {m['bare']:>11.1f} {m['decode']:>13.1f} {m['full']:>11.1f} "
            f"{m['slowdown_decode']:>11.2f}x {m['slowdown_full']:>9.2f}x"
        )
    result = {
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "records_per_s_per_core": measured,
        "target": "decode within 1.5x of bare",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
