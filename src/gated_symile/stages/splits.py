"""Split a cohort into patient-disjoint train/val/test sets with retrieval candidates and lab percentiles.

``splits mimic`` follows the Symile-MIMIC reference algorithm (docs/data.md §6) with a seeded
scikit-learn split, patient-overlap dropping, train-only lab ECDFs and seeded candidate sets; sizes
scale down for small cohorts (rule in ``gated_symile.data.mimic.splits``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="DATASET")
    mimic = kinds.add_parser("mimic", help="Symile-MIMIC splits from cohort.parquet")
    mimic.add_argument(
        "--cohort", type=Path, required=True, help="cohort.parquet of the cohort stage"
    )
    mimic.add_argument("--out", type=Path, required=True, help="output folder")
    mimic.add_argument("--seed", type=int)
    mimic.add_argument("--train-n", type=int, help="requested training admissions")
    mimic.add_argument("--val-n", type=int, help="requested validation admissions")
    mimic.add_argument("--candidate-n", type=int, help="retrieval candidates per query (1 positive)")
    mimic.set_defaults(func=_run_mimic)


def _run_mimic(args: argparse.Namespace) -> int:
    from gated_symile.data.mimic.splits import SplitConfig, write_splits
    from gated_symile.stages.flags import given

    config = SplitConfig(**given(args, "seed", "train_n", "val_n", "candidate_n"))
    metadata = write_splits(args.cohort, args.out, config)
    summary = {
        "splits": {name: info["admissions"] for name, info in metadata["splits"].items()},
        "scaled": metadata["scaled"],
        "dropped_patient_overlap": metadata["dropped_patient_overlap"],
    }
    print(json.dumps(summary, sort_keys=True))
    return 0
