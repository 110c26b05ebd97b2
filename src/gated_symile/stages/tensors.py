"""Decode and normalise the records of each split into model-ready tensors (docs/tensor-format.md).

``tensors mimic`` turns the splits of ``splits mimic`` into ``ecg.npy`` (min-max scaled 12-lead
ECGs), ``labs.npy`` (lab percentiles + observation bits) and ``cxr.npy`` (resized, cropped uint8
radiographs) per split, plus ``index.parquet``, the candidate sets and ``metadata.json``.
``tensors ukb`` writes one fold of the UK-Biobank-style cohort (``gated_symile.data.ukb.tensors``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="DATASET")
    mimic = kinds.add_parser("mimic", help="Symile-MIMIC tensors from the splits stage output")
    mimic.add_argument("--splits", type=Path, required=True, help="output folder of `splits mimic`")
    mimic.add_argument("--ecg", type=Path, required=True, help="MIMIC-IV-ECG root (holds files/)")
    mimic.add_argument(
        "--cxr", type=Path, required=True, help="MIMIC-CXR-JPG or MIMIC-CXR (DICOM) root"
    )
    mimic.add_argument("--out", type=Path, required=True, help="tensor dataset folder")
    mimic.add_argument("--cxr-size", type=int, default=320, help="radiograph edge after crop")
    mimic.add_argument("--seed", type=int, default=0, help="seeds the training random crop")
    mimic.add_argument("--workers", type=int, default=1, help="parallel decoding processes")
    mimic.add_argument(
        "--eval-batch", type=int, default=128, help="evaluation batch size written to metadata"
    )
    mimic.set_defaults(func=_run_mimic)

    ukb = kinds.add_parser("ukb", help="UK-Biobank-style tensors of one fold (intersect or union)")
    ukb.add_argument("--cohort", type=Path, required=True, help="output folder of `cohort ukb`")
    ukb.add_argument("--variant", choices=["intersect", "union"], required=True)
    ukb.add_argument("--fold", type=int, required=True, help="test fold k")
    ukb.add_argument("--out", type=Path, required=True, help="tensor dataset folder")
    ukb.add_argument("--seed", type=int, default=0, help="recorded in metadata (nothing is drawn)")
    ukb.add_argument("--ehr-featurizer", default="codebag", help="registered EHR featuriser")
    ukb.add_argument("--ehr-min-count", type=int, default=20, help="min training participants/code")
    ukb.add_argument("--ehr-max-codes", type=int, default=2048, help="vocabulary cap")
    ukb.add_argument("--ehr-dim", type=int, default=0, help="TF-IDF + SVD width (0 = multi-hot)")
    ukb.set_defaults(func=_run_ukb)


def _run_mimic(args: argparse.Namespace) -> int:
    from gated_symile.errors import ConfigError
    from gated_symile.data.mimic.tensors import TensorConfig, build_tensors

    for flag in ("cxr_size", "workers", "eval_batch"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    config = TensorConfig(
        cxr_size=args.cxr_size, seed=args.seed, workers=args.workers, eval_batch=args.eval_batch
    )
    metadata = build_tensors(args.splits, args.ecg, args.cxr, args.out, config)
    print(json.dumps({"splits": metadata["splits"], "out": str(args.out)}, sort_keys=True))
    return 0


def _run_ukb(args: argparse.Namespace) -> int:
    from gated_symile.data.ukb.ehr import EhrConfig
    from gated_symile.data.ukb.tensors import UkbTensorConfig, build_ukb_tensors

    ehr = EhrConfig(
        featurizer=args.ehr_featurizer, min_count=args.ehr_min_count,
        max_codes=args.ehr_max_codes, dim=args.ehr_dim,
    )
    config = UkbTensorConfig(variant=args.variant, fold=args.fold, seed=args.seed, ehr=ehr)
    metadata = build_ukb_tensors(args.cohort, args.out, config)
    print(json.dumps({"splits": metadata["splits"], "out": str(args.out)}, sort_keys=True))
    return 0
