"""Build study cohorts from raw records: ``cohort mimic`` (Symile-MIMIC rules, docs/data.md §4).

``cohort mimic`` joins MIMIC-IV ``hosp`` admissions with MIMIC-IV-ECG records and MIMIC-CXR(-JPG)
radiographs: CXR in (24 h, 72 h] after admission with CheXpert labels, a QC-passed ECG and labs
within 24 h.  Writes ``cohort.parquet``, ``exclusions.parquet``, ``attrition.csv``/``.png`` and
``summary.json``.  ``cohort ukb`` builds the UK-Biobank-style cohort (docs/data.md §9.3,
``gated_symile.data.ukb.cohort``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="DATASET")
    mimic = kinds.add_parser(
        "mimic", help="Symile-MIMIC cohort from MIMIC-IV, MIMIC-IV-ECG and MIMIC-CXR(-JPG)"
    )
    mimic.add_argument("--mimic-iv", type=Path, required=True, help="folder that holds hosp/")
    mimic.add_argument(
        "--ecg", type=Path, required=True, help="folder that holds record_list.csv and files/"
    )
    mimic.add_argument(
        "--cxr",
        type=Path,
        required=True,
        help="root of the MIMIC-CXR-JPG release or of the DICOM release (detected from its files)",
    )
    mimic.add_argument("--out", type=Path, required=True, help="output folder")
    mimic.add_argument(
        "--chexpert",
        type=Path,
        default=None,
        help="CheXpert labels csv(.gz) (default: <cxr>/mimic-cxr-2.0.0-chexpert.csv.gz)",
    )
    mimic.add_argument(
        "--workers", type=int, default=1, help="processes for ECG QC / DICOM headers"
    )
    mimic.add_argument(
        "--qc-rule",
        default="symile",
        choices=["symile", "strict"],
        help="ECG QC rule: symile = drop NaN or all-zero records (reference); strict = also flat "
        "leads and implausible amplitudes",
    )
    mimic.add_argument(
        "--duckdb-threads", type=int, default=None, help="DuckDB threads (default: --workers)"
    )
    mimic.add_argument(
        "--memory-limit", default="2GB", help="DuckDB memory limit; larger joins spill to disk"
    )
    mimic.set_defaults(func=_run_mimic)

    ukb = kinds.add_parser("ukb", help="UK-Biobank-style cohort: presence, folds, feature tables")
    ukb.add_argument("--raw", type=Path, required=True, help="folder of ukb_main.csv, olink, hesin")
    ukb.add_argument("--out", type=Path, required=True, help="output folder")
    ukb.add_argument("--n-folds", type=int, default=5, help="participant folds (fold k = test)")
    ukb.add_argument("--val-frac", type=float, default=0.1, help="validation share of the rest")
    ukb.add_argument("--seed", type=int, default=0, help="seeds the folds and validation draws")
    ukb.add_argument("--threads", type=int, default=1, help="DuckDB threads for the Olink pivot")
    ukb.add_argument(
        "--ehr-requires-episodes", action="store_true",
        help="EHR missing (not all-zero) for participants without any hospital episode",
    )
    ukb.set_defaults(func=_run_ukb)


def _run_mimic(args: argparse.Namespace) -> int:
    from gated_symile.data.mimic.cohort import MimicCohortConfig, build_mimic_cohort

    config = MimicCohortConfig(
        mimic_iv=args.mimic_iv,
        ecg=args.ecg,
        cxr=args.cxr,
        out=args.out,
        chexpert=args.chexpert,
        workers=args.workers,
        qc_rule=args.qc_rule,
        duckdb_threads=args.duckdb_threads or max(1, args.workers),
        memory_limit=args.memory_limit,
    )
    summary = build_mimic_cohort(config)
    print(json.dumps({k: summary[k] for k in ("admissions", "cohort", "attrition")}, indent=2))
    return 0


def _run_ukb(args: argparse.Namespace) -> int:
    from gated_symile.data.ukb.cohort import UkbCohortConfig, build_ukb_cohort

    config = UkbCohortConfig(
        raw=args.raw, out=args.out, n_folds=args.n_folds, val_frac=args.val_frac, seed=args.seed,
        threads=args.threads, ehr_requires_episodes=args.ehr_requires_episodes,
    )
    summary = build_ukb_cohort(config)
    print(json.dumps({k: summary[k] for k in ("counts", "folds")}, indent=2, sort_keys=True))
    return 0
