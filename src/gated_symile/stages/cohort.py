"""Build study cohorts from raw records: ``cohort mimic`` (Symile-MIMIC rules, docs/data.md §4).

``cohort mimic`` joins MIMIC-IV ``hosp`` admissions with MIMIC-IV-ECG records and MIMIC-CXR(-JPG)
radiographs: CXR in (24 h, 72 h] after admission with CheXpert labels, a QC-passed ECG and labs
within 24 h.  Writes ``cohort.parquet``, ``exclusions.parquet``, ``attrition.csv`` and
``summary.json``.  ``cohort ukb`` builds the UK-Biobank-style cohort (docs/data.md §9.3,
``gated_symile.data.ukb.cohort``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from gated_symile.provenance.manifests import declare
    from gated_symile.stages.flags import setting_choices

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
    mimic.add_argument("--workers", type=int, help="processes for ECG QC / DICOM headers")
    mimic.add_argument(
        "--qc-rule",
        choices=setting_choices("mimic.cohort.qc_rule"),
        help="ECG QC rule: symile = drop NaN or all-zero records (reference); strict = also flat "
        "leads and implausible amplitudes",
    )
    mimic.add_argument(
        "--duckdb-threads", type=int, default=None, help="DuckDB threads (default: --workers)"
    )
    mimic.add_argument(
        "--memory-limit",
        help="DuckDB memory limit, e.g. 2GB (default: a share per DuckDB thread, at least two, and "
        "per admission, docs/data.md §4); more spills to the database file",
    )
    # the stage opens only the tables, the listing files and the records its rules consume, and
    # notes them (gated_symile.provenance.read_set): the manifest hashes those, not the whole releases
    declare(mimic, selective=["mimic_iv", "ecg", "cxr"])
    mimic.set_defaults(func=_run_mimic)

    ukb = kinds.add_parser("ukb", help="UK-Biobank-style cohort: presence, folds, feature tables")
    ukb.add_argument("--raw", type=Path, required=True, help="folder of ukb_main.csv, olink, hesin")
    ukb.add_argument("--out", type=Path, required=True, help="output folder")
    ukb.add_argument("--n-folds", type=int, help="participant folds (fold k = test)")
    ukb.add_argument("--val-frac", type=float, help="validation share of the rest")
    ukb.add_argument("--seed", type=int, help="seeds the folds and validation draws")
    ukb.add_argument("--threads", type=int, help="DuckDB threads for the Olink pivot")
    ukb.add_argument(
        "--ehr-requires-episodes", action="store_true",
        help="EHR missing (not all-zero) for participants without any hospital episode",
    )
    ukb.set_defaults(func=_run_ukb)


def _run_mimic(args: argparse.Namespace) -> int:
    from gated_symile.data.mimic.cohort import MimicCohortConfig, build_mimic_cohort
    from gated_symile.stages.flags import given

    settings = given(
        args, "mimic_iv", "ecg", "cxr", "out", "chexpert", "workers", "qc_rule", "duckdb_threads",
        "memory_limit",
    )
    config = MimicCohortConfig(**settings)
    if not args.duckdb_threads:  # DuckDB gets as many threads as the stage has workers
        config = dataclasses.replace(config, duckdb_threads=max(1, config.workers))
    summary = build_mimic_cohort(config)
    print(json.dumps({k: summary[k] for k in ("admissions", "cohort", "attrition")}, indent=2))
    return 0


def _run_ukb(args: argparse.Namespace) -> int:
    from gated_symile.data.ukb.cohort import UkbCohortConfig, build_ukb_cohort
    from gated_symile.stages.flags import given

    config = UkbCohortConfig(
        **given(args, "raw", "out", "n_folds", "val_frac", "seed", "threads"),
        ehr_requires_episodes=args.ehr_requires_episodes,
    )
    summary = build_ukb_cohort(config)
    print(json.dumps({k: summary[k] for k in ("counts", "folds")}, indent=2, sort_keys=True))
    return 0
