"""Reader throughput against the bare read of the same files' bytes (issue 13 §2), one run.

Reads every record of a synthetic MIMIC release (``gated-symile synth mimic``; generated here
unless ``--release`` names one) and measures records per second for

- ECG:   bare read of ``.hea`` + ``.dat`` bytes  vs  the cohort's check of the records
  (``check_chunk`` on work items of ``MAX_CHUNK`` records, as ``cohort mimic`` runs it: header
  parse, size and checksum checks, QC) -- and ``wfdb.rdrecord`` for reference; also the
  per-record path alone (``qc_record``: what a record outside the common shape costs);
- DICOM header scan: bare read of the file's bytes  vs  ``read_dicom_header`` (the cohort's
  DICOM index)  -- and ``pydicom.dcmread(stop_before_pixels=True)``;
- DICOM image: ``pydicom.dcmread().pixel_array``  vs  ``read_dicom_image``;
- JPG decode: bare read of the file's bytes  vs  ``read_jpg_gray``  -- and Pillow ``open().load()``.

Each figure is the best of ``--repeats`` passes over all files, OS file cache warm (a pipeline
re-run; the cold-cache floor is disk bandwidth).  ``ratio`` = bare rate / ours rate; target
<= 1.5.  Prints a table and writes ``benchmarks/out/readers.json``.

    python benchmarks/bench_readers.py --admissions 200
    python benchmarks/bench_readers.py --release /tmp/rel   # an existing synth mimic release
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "readers.json"


def bare_read(*suffixes: str) -> Callable[[str], None]:
    """Read the bytes of ``path + suffix`` for each suffix (the floor any reader must pay)."""

    def read(path: str) -> None:
        for suffix in suffixes:
            with open(path + suffix, "rb") as handle:
                handle.read()

    return read


def best_rate(
    function: Callable, paths: Sequence[str], repeats: int, chunk: int | None = None
) -> float:
    """Records per second of the fastest of ``repeats`` passes over ``paths``; with ``chunk``,
    ``function`` gets lists of up to ``chunk`` paths (a work item) instead of single paths."""
    items = paths if chunk is None else [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    function(items[0])  # imports and first-call setup are not part of the steady state
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def release_files(root: Path, limit: int) -> dict[str, list[str]]:
    """ECG record stems, DICOM and JPG paths of a synth mimic release (sorted, at most ``limit``)."""

    def listed(folder: str, pattern: str, strip: int = 0) -> list[str]:
        found = sorted(str(p)[: len(str(p)) - strip] for p in (root / folder).rglob(pattern))
        return found[:limit]

    return {
        "ecg": listed("mimic-iv-ecg", "*.hea", strip=4),
        "dicom": listed("mimic-cxr", "*.dcm"),
        "jpg": listed("mimic-cxr-jpg", "*.jpg"),
    }


def measure(
    files: dict[str, list[str]],
    ecg_root: str,
    repeats: int,
    kinds: Sequence[str],
    references: bool = True,
) -> list[dict]:
    import pydicom
    import wfdb
    from PIL import Image

    from gated_symile.data.mimic.ecg_qc_scan import EcgQcTask, check_chunk, qc_record
    from gated_symile.data.mimic.parallel import MAX_CHUNK
    from gated_symile.records import read_dicom_header, read_dicom_image, read_jpg_gray

    # the cohort gets paths relative to the release (os.path.relpath costs ~10 us: not timed)
    relative = {stem: os.path.relpath(stem, ecg_root) for stem in files["ecg"]}

    def ecg_check(stems: list[str]) -> list:  # the release's own QC failures (NaN, zeros) count
        return check_chunk(ecg_root, "symile", False, [relative[stem] for stem in stems])

    def ecg_check_one(stem: str) -> str | None:
        return qc_record(EcgQcTask(ecg_root, relative[stem]))

    def pil_decode(path: str) -> None:
        with Image.open(path) as image:
            image.load()

    rows = []
    plan = [
        ("ECG read + QC", "ecg", bare_read(".hea", ".dat"), (ecg_check, MAX_CHUNK),
         ("wfdb.rdrecord", lambda p: wfdb.rdrecord(p))),
        ("ECG, per record", "ecg", bare_read(".hea", ".dat"), ecg_check_one, None),
        ("DICOM header scan", "dicom", bare_read(""), read_dicom_header,
         ("dcmread(stop_before_pixels)", lambda p: pydicom.dcmread(p, stop_before_pixels=True))),
        ("DICOM image", "dicom", lambda p: pydicom.dcmread(p).pixel_array, read_dicom_image,
         None),
        ("JPG decode", "jpg", bare_read(""), read_jpg_gray, ("Pillow open().load()", pil_decode)),
    ]  # fmt: skip
    for name, kind, bare, ours, reference in plan:
        paths = files[kind]
        if not paths or kind not in kinds:
            continue
        ours, chunk = ours if isinstance(ours, tuple) else (ours, None)
        bare_rate = best_rate(bare, paths, repeats)
        ours_rate = best_rate(ours, paths, repeats, chunk)
        row = {
            "reader": name,
            "files": len(paths),
            "bare": "pixel_array" if kind == "dicom" and name == "DICOM image" else "file bytes",
            "bare_per_s": bare_rate,
            "ours_per_s": ours_rate,
            "ratio": bare_rate / ours_rate,
        }
        if reference is not None and references:
            row["reference"], row["reference_per_s"] = (
                reference[0],
                best_rate(reference[1], paths, repeats),
            )
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, help="an existing synth mimic release")
    parser.add_argument("--admissions", type=int, default=200, help="admissions to generate")
    parser.add_argument("--image-size", type=int, default=256, help="radiograph edge (generated)")
    parser.add_argument("--limit", type=int, default=5000, help="most files of each kind")
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the third-party readers (wfdb.rdrecord takes minutes on 5,000 records)",
    )
    parser.add_argument(
        "--kinds", default="ecg,dicom,jpg", help="comma-separated record kinds to measure"
    )
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore", DeprecationWarning)  # wfdb's pandas deprecation chatter
    with tempfile.TemporaryDirectory(prefix="bench_readers_") as tmp:
        root = args.release
        if root is None:
            from gated_symile.synthetic.mimic import MimicSynthConfig, generate_mimic

            root = Path(tmp)
            generate_mimic(
                root,
                MimicSynthConfig(
                    admissions=args.admissions, seed=args.seed, image_size=args.image_size
                ),
            )
        files = release_files(root, args.limit)
        rows = measure(
            files,
            str(root / "mimic-iv-ecg"),
            args.repeats,
            args.kinds.split(","),
            references=not args.no_reference,
        )

    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "release": str(args.release) if args.release else f"generated, {args.admissions} adm.",
        "repeats": args.repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "target_ratio_max": 1.5,
        "rows": rows,
    }
    print(f"{'reader':<20}{'files':>7}{'bare rec/s':>12}{'ours rec/s':>12}{'ratio':>8}   reference")
    for row in rows:
        reference = (
            f"{row['reference']}: {row['reference_per_s']:.0f}/s" if "reference" in row else ""
        )
        print(
            f"{row['reader']:<20}{row['files']:>7}{row['bare_per_s']:>12.0f}"
            f"{row['ours_per_s']:>12.0f}{row['ratio']:>8.2f}   {reference}"
        )
    print(f"bare = file bytes, except DICOM image: pixel_array; load average {os.getloadavg()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
