"""Scale curve of the Symile-MIMIC rebuild (cohort, splits, tensors) on synthetic releases.

For each size it generates (or reuses) a full synthetic release with ECGs listed outside every
admission window (``--ecg-outside``: the real release's bulk), then runs each stage through the
CLI in a fresh child process -- provenance manifest included, with an *empty* hash cache -- and
reports per stage: wall time, records opened, peak RSS (the stage process and its largest
worker) and its floors (``_floors``): the bare-read floor, the time to read (and gunzip) once,
on the same number of processes, exactly the bytes the stage read, taken from its manifest; for
a stage that reads folders selectively also the provenance floor, those reads with sha256 while
the folders are walked (listed by name, size and mtime), as its manifest needs.  Per record it compares
ECG read + QC with the bare read of the same files, and the tensors' JPG decode + resize with the
bare read of the same JPGs.  Tables-only releases (``--lab-rows``) time the labevents scan up to
MIMIC-IV's 118 M rows.  A least-squares line of time against size per stage gives the projected
time of a full real MIMIC rebuild on 2 and 16 cores (only the work on ``--workers`` scaled by
cores: ``project``).  Prints a table and writes ``benchmarks/out/scale.json``.

Page cache: each stage is timed on its second run, unless ``--cold`` evicts the release's files
(``posix_fadvise``; no root needed, the software stays cached) before every timing, floors and
per-record costs included: a release read from disk, as a real one is (its 100 GB of ECGs do
not fit in memory).  On a virtual machine the host may still cache the disk: the cold figures are
then those of a fast disk.

    python benchmarks/bench_scale.py --admissions 300 --lab-rows 100000          # smoke, minutes
    python benchmarks/bench_scale.py --admissions 5000 20000 50000 --workers 16 \\
        --lab-rows 2000000 20000000 118000000                                     # idle machine
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from _floors import evict, files_read, listed_folders, provenance_floor_s, read_chunk, timed_map

OUT_JSON = Path(__file__).parent / "out" / "scale.json"
FULL_MIMIC = {"admissions": 431_231, "lab_rows": 118_171_367, "ecg_listed": 800_035, "cxr_images": 377_110}
"""MIMIC-IV v2.2 hosp admissions and labevents rows, MIMIC-IV-ECG v1.0 records, MIMIC-CXR-JPG images."""
REAL_COHORT = 11_000
"""Admissions of the real Symile-MIMIC cohort (about 11 000 ECG/CXR pairs are decoded)."""
STEP = re.compile(r"^\[cohort\s+([\d.]+) s\] (.*)$")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admissions", type=int, nargs="+", default=[300])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ecg-outside", type=float, default=1.5, help="ECGs per admission outside all windows")
    parser.add_argument("--image-size", type=int, default=64, help="synthetic radiograph edge (px)")
    parser.add_argument("--cxr-size", type=int, default=320, help="tensors' radiograph edge (the paper's)")
    parser.add_argument("--lab-rows", type=float, nargs="*", default=[], help="tables-only releases")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_scale"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-everything", action="store_true", help="also time QC of every listed ECG")
    parser.add_argument("--reference-cmd", default=None,
                        help="the reference script, run side by side: a command with {mimic_iv} {ecg} {cxr} {out}")
    parser.add_argument("--cold", action="store_true", help="evict the files read from the page cache before each timing")
    parser.add_argument("--json", type=Path, default=OUT_JSON)
    parser.add_argument("--child", nargs=2, metavar=("CACHE", "ARGV_JSON"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------ measuring one stage


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``, reset by exec, unlike ``ru_maxrss`` of a fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(cache: str, argv_json: str) -> int:
    """Run one stage through the CLI (manifest included) and print its measurements: wall time,
    CPU time of it and its workers (user + system: a stage whose CPU time is near wall x cores is
    CPU-bound, not bound by its reads), this process's peak RSS and the peak of the summed RSS of
    it and its workers (sampled)."""
    import threading

    import psutil

    os.environ["GATED_SYMILE_HASH_CACHE"] = cache
    from gated_symile.cli import main

    me, stop, peak = psutil.Process(), threading.Event(), [0]

    def sample() -> None:
        while not stop.wait(0.05):
            try:
                tree = [me, *me.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                continue

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    code = main(json.loads(argv_json))
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in used)  # the workers were joined: counted as children
    print(json.dumps({"code": code, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb(),
                      "tree_peak_rss_mb": peak[0] / 2**20}))  # fmt: skip
    return code


def release_files(root: Path) -> list[str]:
    """Every file under ``root`` (a release: what a cold stage may read)."""
    return [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]


def run_stage(argv: list[str], work: Path, cold: list[str] | None) -> dict:
    """One stage in a fresh process with an empty hash cache; its measurements and log steps.

    Page cache: with ``cold`` (the release's files) those are evicted first (a cold run);
    otherwise the stage runs once untimed before the measured run (``first_run_s``), because how
    much of a release the kernel still holds depends on what ran before (a 20k release is partly
    evicted by the time its turn comes) and a half-warm run measures the disk, not the code."""
    if cold is not None:
        evict(cold)
        first = None
    else:
        first = _run_child(argv, work)["wall_s"]
    done = _run_child(argv, work, raw=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["first_run_s"] = first
    steps, last = [], 0.0  # (message, seconds since the previous message): the step it closes
    for line in done.stderr.splitlines():
        match = STEP.match(line)
        if match:
            at = float(match.group(1))
            steps.append((match.group(2), round(at - last, 3)))
            last = at
    result.update(steps=steps, cold=cold is not None, manifest_and_startup_s=result["wall_s"] - last)
    return result


def _run_child(argv: list[str], work: Path, raw: bool = False):
    """Run the stage in a child process with an emptied hash cache: its measurements (or, with
    ``raw``, the finished process)."""
    cache = work / f"cache-{argv[0]}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{cache}{suffix}").unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(cache), json.dumps([str(a) for a in argv])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv[:2]))} failed:\n{done.stderr[-3000:]}")
    return done if raw else json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ per-record work


def _qc_chunk(root: str, paths: list[str], hash_files: bool = False) -> int:
    """The cohort's check of one work item (``check_chunk``); ``hash_files`` as the stage runs it,
    hashing what it read for the manifest."""
    from gated_symile.data.mimic.ecg_qc_scan import check_chunk

    return sum(check.reason is None for check in check_chunk(root, "symile", hash_files, paths))


def _header_chunk(root: str, paths: list[str]) -> int:
    from gated_symile.data.mimic.cxr_index import _read_header_chunk

    return len(_read_header_chunk(root, True, paths))


def _decode_chunk(size: int, paths: list[str]) -> int:
    from gated_symile.data.imaging import prepare_cxr
    from gated_symile.data.mimic.tensors import read_cxr_gray

    return sum(int(prepare_cxr(read_cxr_gray(Path(p)), size, None).size > 0) for p in paths)


# ------------------------------------------------------------------ one release


def generate(root: Path, args: argparse.Namespace, admissions: int, *, tables_only: bool = False,
             labs_per_admission: int = 100) -> dict:  # fmt: skip
    marker = root / "generator-summary.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    from gated_symile.synthetic.mimic import MimicSynthConfig, generate_mimic

    config = MimicSynthConfig(
        admissions=admissions, seed=args.seed, image_size=args.image_size, workers=args.workers,
        ecg_outside_per_admission=args.ecg_outside, scale=tables_only, labs_per_admission=labs_per_admission,
    )  # fmt: skip
    start = time.perf_counter()
    summary = generate_mimic(root, config)
    summary["generate_s"] = time.perf_counter() - start
    marker.write_text(json.dumps(summary, default=str))
    return summary


def measure_release(args: argparse.Namespace, admissions: int) -> dict:
    root = args.work_dir / f"adm{admissions}-out{args.ecg_outside:g}-img{args.image_size}-seed{args.seed}"
    gen = generate(root, args, admissions)
    raw, res = {k: root / v for k, v in (("mimic_iv", "mimic-iv"), ("ecg", "mimic-iv-ecg"),
                                         ("cxr", "mimic-cxr-jpg"))}, root / "results"  # fmt: skip
    w = str(args.workers)
    stages = {
        "cohort": ["cohort", "mimic", "--mimic-iv", raw["mimic_iv"], "--ecg", raw["ecg"], "--cxr", raw["cxr"],
                   "--out", res / "cohort", "--workers", w],
        "cohort_dicom": ["cohort", "mimic", "--mimic-iv", raw["mimic_iv"], "--ecg", raw["ecg"],
                         "--cxr", root / "mimic-cxr", "--chexpert", raw["cxr"] / "mimic-cxr-2.0.0-chexpert.csv.gz",
                         "--out", res / "cohort_dicom", "--workers", w],
        "splits": ["splits", "mimic", "--cohort", res / "cohort" / "cohort.parquet", "--out", res / "splits"],
        "tensors": ["tensors", "mimic", "--splits", res / "splits", "--ecg", raw["ecg"], "--cxr", raw["cxr"],
                    "--out", res / "tensors", "--cxr-size", str(args.cxr_size), "--workers", w],
    }  # fmt: skip
    row: dict = {"admissions": admissions, "generate_s": gen.get("generate_s"), "rows": gen["rows"],
                 "files": gen["files"], "stages": {}}  # fmt: skip
    row["generate_admissions_per_s"] = admissions / row["generate_s"] if row["generate_s"] else None
    release = release_files(root) if args.cold else None
    for name, argv in stages.items():
        result = row["stages"][name] = run_stage(argv, args.work_dir, release)
        manifest = res / name / "provenance.json"
        every = [f for files in files_read(manifest).values() for f in files]
        result["files_read"] = len(every)
        result["bytes_read"] = sum(os.path.getsize(p) if n is None else n for p, n in every)
        cold = cold_paths(args, every)
        result["bare_read_floor_s"] = timed_map(read_chunk, every, args.workers, cold)
        if listed := listed_folders(manifest):
            result["provenance_floor_s"] = provenance_floor_s(every, listed, args.workers, cold)
    summary = json.loads((res / "cohort" / "summary.json").read_text())
    row["stages"]["cohort"]["records_opened"] = summary["records_opened"]
    dicom = json.loads((res / "cohort_dicom" / "summary.json").read_text())
    row["stages"]["cohort_dicom"]["records_opened"] = dicom["records_opened"]
    row["ecg_listed"], row["cohort_admissions"] = summary["ecg_records_listed"], summary["cohort"]
    row["per_record"] = per_record_costs(args, root, res)
    if args.reference_cmd:
        command = args.reference_cmd.format(out=res / "reference", **raw)
        start = time.perf_counter()
        done = subprocess.run(shlex.split(command), check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"reference failed ({command}):\n{done.stderr[-3000:]}")
        row["reference_s"] = time.perf_counter() - start
    return row


def cold_paths(args: argparse.Namespace, files: list) -> list[str] | None:
    """The paths of ``files`` (paths or ``(path, bytes)`` pairs) to evict before a ``--cold``
    timing; ``None`` on a warm run."""
    if not args.cold:
        return None
    return [f if isinstance(f, str) else f[0] for f in files]


def per_record_costs(args: argparse.Namespace, root: Path, res: Path) -> dict:
    """ECG read + QC vs bare read of the same records; JPG decode + resize vs bare read."""
    ecg_root = root / "mimic-iv-ecg"
    read = files_read(res / "cohort" / "provenance.json")["ecg"]
    stems = sorted({p[: -len(".dat")] for p, _ in read if p.endswith(".dat")})
    rels = [os.path.relpath(s, ecg_root) for s in stems]
    record_files = [(s + ext, None) for s in stems for ext in (".hea", ".dat")]
    cold = cold_paths(args, record_files)
    out = {
        "ecg_records": len(rels),
        "ecg_qc_s": timed_map(partial(_qc_chunk, str(ecg_root)), rels, args.workers, cold),
        "ecg_bare_read_s": timed_map(read_chunk, record_files, args.workers, cold),
        "ecg_qc_and_hash_s": timed_map(partial(_qc_chunk, str(ecg_root), hash_files=True), rels, args.workers, cold),
    }
    out["ecg_qc_over_bare"] = out["ecg_qc_s"] / max(out["ecg_bare_read_s"], 1e-9)
    if args.check_everything:
        import csv

        with open(ecg_root / "record_list.csv", newline="") as handle:
            listed = [r["path"] for r in csv.DictReader(handle) if r["path"]]
        everything = cold_paths(args, [str(ecg_root / rel) + ext for rel in listed for ext in (".hea", ".dat")])
        out["ecg_check_everything_s"] = timed_map(partial(_qc_chunk, str(ecg_root)), listed, args.workers, everything)
    dicoms = [(p, n) for p, n in files_read(res / "cohort_dicom" / "provenance.json")["cxr"] if p.endswith(".dcm")]
    dicom_root = str(root / "mimic-cxr")
    cold = cold_paths(args, dicoms)
    out["dicom_headers"] = len(dicoms)
    out["dicom_header_scan_s"] = timed_map(
        partial(_header_chunk, dicom_root), [os.path.relpath(p, dicom_root) for p, _ in dicoms], args.workers, cold
    )
    out["dicom_header_bare_read_s"] = timed_map(read_chunk, dicoms, args.workers, cold)
    out["dicom_whole_file_bare_read_s"] = timed_map(read_chunk, [(p, None) for p, _ in dicoms], args.workers, cold)
    jpgs = [p for p, _ in files_read(res / "tensors" / "provenance.json")["cxr"]]
    out["jpgs"] = len(jpgs)
    cold = cold_paths(args, jpgs)
    out["jpg_decode_resize_s"] = timed_map(partial(_decode_chunk, args.cxr_size), jpgs, args.workers, cold)
    out["jpg_bare_read_s"] = timed_map(read_chunk, [(p, None) for p in jpgs], args.workers, cold)
    return out


def measure_labs(args: argparse.Namespace, lab_rows: float) -> dict:
    """The labevents scan on a tables-only release of ``lab_rows`` rows, at MIMIC-IV's lab rows
    per admission (274: 118 M rows are a release of MIMIC-IV's 431 k admissions)."""
    per_admission = round(FULL_MIMIC["lab_rows"] / FULL_MIMIC["admissions"])
    admissions = max(1, int(lab_rows // per_admission))
    root = args.work_dir / f"tables-adm{admissions}-labs{per_admission}-seed{args.seed}"
    gen = generate(root, args, admissions, tables_only=True, labs_per_admission=per_admission)
    done = subprocess.run(  # the cohort's SQL layer alone (bench_cohort: no records on disk)
        [sys.executable, str(Path(__file__).parent / "bench_cohort.py"), "--child", str(root),
         "--threads", str(args.workers)],  # the stage's default memory limit
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    labevents = root / "mimic-iv" / "hosp" / "labevents.csv.gz"
    floor = timed_map(read_chunk, [(str(labevents), None)], 1, cold_paths(args, [str(labevents)]))
    return {"lab_rows": gen["rows"]["labevents"], "select_labs_s": result["select_labs_s"],
            "total_s": result["total_s"], "peak_rss_mb": result["peak_rss_mb"], "gunzip_floor_s": floor}  # fmt: skip


# ------------------------------------------------------------------ fit and projection


def step_s(stage: dict, prefix: str) -> float:
    """Seconds of the stage step whose closing log message starts with ``prefix`` (0 if none)."""
    return sum(seconds for message, seconds in stage["steps"] if message.startswith(prefix))


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x`` with ``a, b >= 0`` (one point, or a slope the noise made
    negative: a line through the origin and the largest point, which over- rather than
    under-estimates)."""
    if len(xs) >= 2:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
        if b > 0 and my - b * mx >= 0:
            return my - b * mx, b
    x, y = max(zip(xs, ys)) if xs else (0.0, 0.0)
    return 0.0, max(y, 0.0) / x if x else 0.0


def at_size(xs: list[float], ys: list[float], x: float) -> float:
    """The least-squares line of ``ys`` against ``xs`` (``fit``), read at ``x``."""
    a, b = fit(xs, ys)
    return a + b * x


def project(rows: list[dict], labs: list[dict], workers: int) -> dict:
    """Full-MIMIC times on 2 and 16 cores: each part's fit at MIMIC's size (cohort parts per
    listed admission, the labevents scan per row from the tables-only releases if any, splits
    and tensors per cohort admission at the real cohort's size).

    Scaled by ``workers / cores``: the cohort's ECG work items (read + QC + sha256, timed on
    their own) and the tensors stage's per-admission cost (the slope of its fit: reading ECGs,
    decoding and resizing radiographs on its workers). Serial: the rest of the cohort stage
    (start-up, SQL, listing, writing), the splits and the tensors stage's start-up (its fit's
    intercept). The stage scans labevents (one gzip stream, serial) while its workers check the
    ECGs, so that phase counts as the longer of the two; without tables-only releases the scan
    is taken as the whole phase measured in the stage (an upper bound). A 16-core run of the 20k
    release measured the cohort stage hardly faster than on 2 cores, the tensors stage much faster."""
    n = [r["admissions"] for r in rows]
    m = [r["cohort_admissions"] for r in rows]
    qc_and_labs = [step_s(r["stages"]["cohort"], "ECG QC done") + step_s(r["stages"]["cohort"], "labevents streamed")
                   for r in rows]  # fmt: skip
    cohort_rest = [r["stages"]["cohort"]["wall_s"] - both for r, both in zip(rows, qc_and_labs)]
    tensors_startup, tensors_per_admission = fit(m, [r["stages"]["tensors"]["wall_s"] for r in rows])
    if labs:
        labevents = at_size([x["lab_rows"] for x in labs], [x["select_labs_s"] for x in labs], FULL_MIMIC["lab_rows"])
    else:
        labevents = at_size([r["rows"]["labevents"] for r in rows], qc_and_labs, FULL_MIMIC["lab_rows"])
    ecg = at_size(n, [r["per_record"]["ecg_qc_and_hash_s"] for r in rows], FULL_MIMIC["admissions"])
    serial = {
        "cohort_startup_sql_listing_s": at_size(n, cohort_rest, FULL_MIMIC["admissions"]),
        "splits_s": at_size(m, [r["stages"]["splits"]["wall_s"] for r in rows], REAL_COHORT),
        "tensors_startup_s": tensors_startup,
    }
    parallel = {"ecg_read_qc_hash_s": ecg, "tensors_per_admission_s": tensors_per_admission * REAL_COHORT}
    out = {"assumes": f"measured on {workers} workers; ECG work items and tensors per admission "
                      f"x {workers}/cores, the labevents scan alongside the ECG work, the rest serial; "
                      f"real cohort {REAL_COHORT}",
           "serial_s": serial, "labevents_s": labevents, "parallel_at_measured_workers_s": parallel}  # fmt: skip
    for cores in (2, 16):
        scale = workers / cores
        out[f"{cores}_cores_s"] = (sum(serial.values()) + max(labevents, ecg * scale)
                                   + parallel["tensors_per_admission_s"] * scale)  # fmt: skip
    return out


# ------------------------------------------------------------------ report


def print_table(rows: list[dict], labs: list[dict], projection: dict) -> None:
    head = ("admissions", "stage", "wall_s", "cpu_s", "first_s", "floor_s", "prov_floor", "opened", "files_read",
            "rss_mb", "tree_rss")  # fmt: skip
    print(" | ".join(f"{h:>10}" for h in head))
    for r in rows:
        for name, s in r["stages"].items():
            opened = "+".join(str(v) for v in s.get("records_opened", {}).values() if v)
            print(" | ".join(f"{v:>10}" for v in (
                r["admissions"], name, f"{s['wall_s']:.2f}", f"{s['cpu_s']:.2f}",
                "-" if s["first_run_s"] is None else f"{s['first_run_s']:.2f}",
                f"{s['bare_read_floor_s']:.2f}", f"{s['provenance_floor_s']:.2f}" if "provenance_floor_s" in s else "-", opened,
                s["files_read"], f"{s['peak_rss_mb']:.0f}", f"{s['tree_peak_rss_mb']:.0f}")))  # fmt: skip
        cohort = r["stages"]["cohort"]
        print(f"    cohort steps: ECG QC {step_s(cohort, 'ECG QC done'):.2f} s, labevents "
              f"{step_s(cohort, 'labevents streamed'):.2f} s, manifest + start-up {cohort['manifest_and_startup_s']:.2f} s")
        if "reference_s" in r:
            print(f"    reference cohort script {r['reference_s']:.1f} s: ours x{r['reference_s'] / cohort['wall_s']:.1f} faster")
        p = r["per_record"]
        print(f"    ECG read+QC (work items) {p['ecg_qc_s']:.2f} s vs bare read {p['ecg_bare_read_s']:.2f} s "
              f"({p['ecg_records']} records, x{p['ecg_qc_over_bare']:.1f}; with the manifest's sha256 "
              f"{p['ecg_qc_and_hash_s']:.2f} s); JPG decode+resize "
              f"{p['jpg_decode_resize_s']:.2f} s vs bare read {p['jpg_bare_read_s']:.2f} s ({p['jpgs']} JPGs); "
              f"DICOM header scan {p['dicom_header_scan_s']:.2f} s vs bare read of the headers "
              f"{p['dicom_header_bare_read_s']:.2f} s ({p['dicom_headers']} files)")
    for x in labs:
        print(f"labevents {x['lab_rows']:,} rows: scan {x['select_labs_s']:.2f} s, gunzip floor {x['gunzip_floor_s']:.2f} s, "
              f"peak RSS {x['peak_rss_mb']:.0f} MB")
    print(f"projected full MIMIC rebuild: {projection['2_cores_s'] / 60:.1f} min on 2 cores, "
          f"{projection['16_cores_s'] / 60:.1f} min on 16 cores ({projection['assumes']})")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(*args.child)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    rows = [measure_release(args, n) for n in args.admissions]
    labs = [measure_labs(args, x) for x in args.lab_rows]
    projection = project(rows, labs, args.workers)
    print_table(rows, labs, projection)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": " ".join(shlex.quote(a) for a in sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpus": os.cpu_count(), "workers": args.workers, "uname": " ".join(os.uname())}, "cold": args.cold,
        "releases": rows, "tables_only": labs, "projection": projection}, indent=2, default=str) + "\n")  # fmt: skip
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
