"""audit: check a results tree against its provenance manifests (OK, MODIFIED, MISSING, STALE).

Finds every stage manifest under RESULTS_DIR (any subfolder of results works), follows each
manifest's inputs back to the stages that produced them and on to the raw input trees, and says
per artefact whether it still has the recorded sha256 (MODIFIED / MISSING otherwise) and whether
what it was made from changed since (STALE). Exit code 0 when everything is OK, 1 otherwise.
Writes nothing (no manifest of its own); unchanged files are checked through the hash cache.
"""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results_dir", metavar="RESULTS_DIR", help="results folder (or any subfolder)")
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    parser.add_argument(
        "--hash-cache",
        metavar="PATH",
        default=None,
        help="hash cache database (default: $GATED_SYMILE_HASH_CACHE or ~/.cache/gated-symile/sha256.sqlite; "
        "'off' disables)",
    )
    parser.add_argument(
        "--rehash", action="store_true", help="read every file again instead of trusting size + mtime"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gated_symile.provenance.audit import audit, format_table, to_json
    from gated_symile.provenance.hash_cache import HashCache, cache_location
    from gated_symile.provenance.hashing import Hasher

    with Hasher(HashCache(cache_location(args.hash_cache)), use_cache=not args.rehash) as hasher:
        findings = audit(args.results_dir, hasher)
    print(to_json(findings) if args.json else format_table(findings))
    return 0 if all(f.status == "OK" for f in findings) else 1
