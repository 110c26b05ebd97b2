"""Provenance hashing of a large raw tree: first hash, cached re-hash, manifest entry size.

A real raw release holds millions of files (MIMIC-IV-ECG: ~1.6 M ``.hea``/``.dat`` files), and the
cohort and tensors stages hash their raw folders before they run.  This writes ``--files`` small
files in a MIMIC-like ``pNN/pSUBJECT/sSTUDY/`` layout, then times, in fresh processes' worth of
state (a new hash cache for the first pass):

* first hash (every file read; the files are in the page cache, so this is the per-file
  overhead for small files and the sha256 rate with the read threads for ``--file-bytes 1000000``);
* cached re-hash (every file found in the cache by real path, size and mtime: a ``stat``);
* the size of the folder's per-file list as it would sit inside a manifest (JSON) and as the gzip
  sidecar that :func:`gated_symile.provenance.listings.write_listings` writes for long lists, and peak RSS.

Prints a table and writes ``benchmarks/out/provenance.json``.

    .venv/bin/python benchmarks/bench_provenance.py [--files 300000] [--file-bytes 64]
    .venv/bin/python benchmarks/bench_provenance.py --files 1500 --file-bytes 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from gated_symile.provenance.listings import write_listings
from gated_symile.provenance.hash_cache import HashCache
from gated_symile.provenance.hashing import READ_THREADS, Hasher

FILES_PER_STUDY = 30


def write_tree(root: Path, n_files: int, file_bytes: int) -> None:
    """``n_files`` random files, 30 per study folder, 1000 studies per top-level folder."""
    for start in range(0, n_files, FILES_PER_STUDY):
        study = start // FILES_PER_STUDY
        folder = root / f"p{10 + study // 1000}" / f"p{10 + study // 1000}{study:06d}" / f"s{study}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(min(FILES_PER_STUDY, n_files - start)):
            (folder / f"{k:08d}.dat").write_bytes(os.urandom(file_bytes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300_000)
    parser.add_argument("--file-bytes", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/provenance.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_provenance_") as tmp:
        root = Path(tmp) / "files"
        write_tree(root, args.files, args.file_bytes)
        with Hasher(HashCache(Path(tmp) / "cache.sqlite")) as hasher:
            start = time.perf_counter()
            first = hasher.hash(root)
            first_s = time.perf_counter() - start
            start = time.perf_counter()
            again = hasher.hash(root)
            cached_s = time.perf_counter() - start
        assert again.sha256 == first.sha256 and again.cached == args.files
        entry = again.record()
        entry_mb = len(json.dumps(entry)) / 1e6
        doc = {"inputs": [entry], "outputs": []}
        start = time.perf_counter()
        write_listings(doc, Path(tmp) / "provenance.json")
        sidecar_s = time.perf_counter() - start
        sidecar_mb = (Path(tmp) / doc["inputs"][0]["listing"]["path"]).stat().st_size / 1e6 if "listing" in entry else 0.0
    result = {
        "files": args.files,
        "file_bytes": args.file_bytes,
        "read_threads": READ_THREADS,
        "first_hash_s": round(first_s, 2),
        "cached_rehash_s": round(cached_s, 2),
        "cached_us_per_file": round(cached_s / args.files * 1e6, 1),
        "inline_list_mb": round(entry_mb, 1),
        "sidecar_mb": round(sidecar_mb, 1),
        "sidecar_write_s": round(sidecar_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(f"{'files':>9} {'bytes':>9} {'first hash':>11} {'cached':>8} {'us/file':>8} {'inline MB':>10} {'sidecar MB':>11} {'peak RSS':>9}")
    print(
        f"{args.files:>9,} {args.file_bytes:>9,} {first_s:>10.1f}s {cached_s:>7.1f}s {result['cached_us_per_file']:>8.1f} "
        f"{entry_mb:>10.1f} {sidecar_mb:>11.1f} {result['peak_rss_mb']:>7} MB"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
