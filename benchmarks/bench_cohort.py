"""Benchmark the table part of the Symile-MIMIC cohort (SQL rules over the raw csv.gz tables).

Generates tables-only synthetic releases (``generate_mimic(..., scale=True)``: no waveforms or
images) at two labevents sizes, then times the cohort's SQL layer in a fresh child process per
size, so that the reported peak RSS belongs to that size alone.  ECG QC and the image existence
check are skipped (no records on disk): every listed ECG passes and every image is present.

Targets (brief): labs scanned at >= 1 M rows/s on 2 threads; peak RSS < 2 GB and flat as
labevents grows.

    python benchmarks/bench_cohort.py                                  # ~1-2 min
    python benchmarks/bench_cohort.py --admissions 50000 --labs-per-admission 100 200
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT_JSON = Path(__file__).parent / "out" / "cohort.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admissions", type=int, default=5000)
    parser.add_argument(
        "--labs-per-admission",
        type=int,
        nargs="+",
        default=[100, 200],
        help="one benchmark size per value (mean lab rows per admission)",
    )
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    parser.add_argument(
        "--memory-limit", default="default", help="DuckDB memory limit (default: the stage's)"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_cohort"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def generate(root: Path, admissions: int, labs: int, seed: int) -> dict:
    """Generate (or reuse) a tables-only raw world; returns the generator summary."""
    marker = root / "generator-summary.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    from gated_symile.synthetic.mimic import MimicSynthConfig, generate_mimic

    start = time.perf_counter()
    summary = generate_mimic(
        root,
        MimicSynthConfig(admissions=admissions, seed=seed, scale=True, labs_per_admission=labs),
    )
    summary["generate_s"] = time.perf_counter() - start
    marker.write_text(json.dumps(summary, default=str))
    return summary


def peak_rss_mb() -> float:
    """Peak resident set of this process (``VmHWM``; unlike ``ru_maxrss`` it is reset by exec)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tables(root: Path, threads: int, memory_limit: str | None) -> dict:
    """The cohort's table part on ``root`` (in this process); returns timings per step."""
    import tempfile

    from gated_symile.data.mimic import cohort_rules as rules
    from gated_symile.data.mimic import lab_rules
    from gated_symile.data.mimic.cohort import fit_memory_limit_to_release, open_duckdb
    from gated_symile.outputs import ROWS_PER_GROUP
    from gated_symile.data.mimic.cxr_index import detect_cxr_release, register_cxr_tables
    from gated_symile.records.mimic_tables import (
        ADMISSIONS,
        ECG_RECORD_LIST,
        LABEVENTS,
        PATIENTS,
        csv_select_sql,
        load_table,
    )

    hosp = root / "mimic-iv" / "hosp"
    times: dict[str, float] = {}
    tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        times[name] = now - tick
        times[name.removesuffix("_s") + "_peak_rss_mb"] = peak_rss_mb()
        tick = now

    with tempfile.TemporaryDirectory(prefix="duckdb-", dir=root) as tmp:
        con = open_duckdb(threads, memory_limit, tmp)
        load_table(con, "patients", hosp / PATIENTS.filename, PATIENTS)
        load_table(con, "admissions", hosp / ADMISSIONS.filename, ADMISSIONS)
        if memory_limit is None:
            fit_memory_limit_to_release(con, threads)  # as the stage
        rules.build_admissions(con)
        load_table(
            con,
            "ecg_list",
            root / "mimic-iv-ecg" / ECG_RECORD_LIST.filename,
            ECG_RECORD_LIST,
            file_row=True,
        )
        register_cxr_tables(con, detect_cxr_release(root / "mimic-cxr-jpg"))
        rules.build_cxr_index(con)
        con.execute("CREATE TABLE cxr_absent (file_row BIGINT)")
        lap("load_small_tables_s")
        rules.select_cxr(con)
        rules.build_ecg_candidates(con)
        con.execute("CREATE TABLE ecg_rejected (file_row BIGINT, reason VARCHAR, problem VARCHAR)")
        rules.select_ecg(con)
        lap("select_cxr_ecg_s")
        lab_rules.select_labs(con, csv_select_sql(hosp / LABEVENTS.filename, LABEVENTS, file_row=True))
        lap("select_labs_s")
        rules.decide_admissions(con)
        # streamed in the stage's row groups, as the stage writes it (never whole)
        batches = rules.cohort_batches(con, ROWS_PER_GROUP)
        cohort_rows = sum(batch.num_rows for batch in batches)
        lap("assemble_s")
        con.close()
    times["total_s"] = sum(v for k, v in times.items() if k.endswith("_s"))
    times["cohort_rows"] = cohort_rows
    return times


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        limit = None if args.memory_limit == "default" else args.memory_limit
        result = run_tables(args.child, args.threads, limit)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return 0

    rows = []
    for labs in args.labs_per_admission:
        root = args.work_dir / f"adm{args.admissions}-labs{labs}-seed{args.seed}"
        summary = generate(root, args.admissions, labs, args.seed)
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(root),
                "--threads",
                str(args.threads),
                "--memory-limit",
                args.memory_limit,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        lab_rows = int(summary["rows"]["labevents"])
        labevents = root / "mimic-iv" / "hosp" / "labevents.csv.gz"
        rows.append(
            {
                "admissions": args.admissions,
                "lab_rows": lab_rows,
                "labevents_gz_mb": labevents.stat().st_size / 2**20,
                "lab_rows_per_s": lab_rows / result["select_labs_s"],
                "generate_s": summary.get("generate_s"),
                **result,
            }
        )

    header = (
        "admissions",
        "lab_rows",
        "labevents_gz_mb",
        "select_labs_s",
        "lab_rows_per_s",
        "total_s",
        "peak_rss_mb",
        "cohort_rows",
    )
    print(" | ".join(f"{h:>15}" for h in header))
    for row in rows:
        print(
            " | ".join(
                f"{row[h]:>15,.2f}" if isinstance(row[h], float) else f"{row[h]:>15,}"
                for h in header
            )
        )
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(
        json.dumps(
            {"threads": args.threads, "memory_limit": args.memory_limit, "runs": rows}, indent=2
        )
        + "\n"
    )
    print(f"wrote {OUT_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
