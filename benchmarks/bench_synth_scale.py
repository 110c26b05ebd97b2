"""Benchmark the tables-only (``--scale``) path of the synthetic MIMIC generator.

Prints a table (admissions, lab rows, seconds, rows/s, bytes) and writes
``benchmarks/out/bench_synth_scale.json``.  The default size runs in about a minute on 2 cores;
``--admissions 50000 --labs-per-admission 200`` writes ~10 million lab rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from gated_symile.synthetic.mimic import MimicSynthConfig, generate_mimic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admissions", type=int, default=10000)
    parser.add_argument("--labs-per-admission", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="output root (default: a temp dir)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).parent / "out" / "bench_synth_scale.json",
    )
    args = parser.parse_args(argv)

    cfg = MimicSynthConfig(
        admissions=args.admissions,
        seed=args.seed,
        scale=True,
        labs_per_admission=args.labs_per_admission,
    )
    with tempfile.TemporaryDirectory(prefix="bench_synth_scale_") as tmp:
        out = args.out or Path(tmp)
        start = time.perf_counter()
        summary = generate_mimic(out, cfg)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    rows = summary["rows"]["labevents"]
    result = {
        "admissions": args.admissions,
        "labs_per_admission": args.labs_per_admission,
        "lab_rows": rows,
        "seconds": round(seconds, 2),
        "lab_rows_per_s": round(rows / seconds),
        "admissions_per_s": round(args.admissions / seconds, 1),
        "bytes_written": size,
        "peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
        "rows": summary["rows"],
    }
    print(
        f"{'admissions':>10} {'lab rows':>11} {'seconds':>8} {'rows/s':>10} {'MB':>8} {'peak RSS MB':>11}"
    )
    print(
        f"{args.admissions:>10} {rows:>11} {seconds:>8.1f} {rows / seconds:>10.0f} "
        f"{size / 1e6:>8.1f} {result['peak_rss_mb']:>11}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
