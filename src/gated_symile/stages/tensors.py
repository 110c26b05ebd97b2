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
    from gated_symile.provenance.manifests import declare
    from gated_symile.stages.flags import setting_choices

    kinds = parser.add_subparsers(dest="kind", required=True, metavar="DATASET")
    mimic = kinds.add_parser("mimic", help="Symile-MIMIC tensors from the splits stage output")
    mimic.add_argument("--splits", type=Path, required=True, help="output folder of `splits mimic`")
    mimic.add_argument("--ecg", type=Path, required=True, help="MIMIC-IV-ECG root (holds files/)")
    mimic.add_argument(
        "--cxr", type=Path, required=True, help="MIMIC-CXR-JPG or MIMIC-CXR (DICOM) root"
    )
    mimic.add_argument("--out", type=Path, required=True, help="tensor dataset folder")
    mimic.add_argument("--cxr-size", type=int, help="radiograph edge after crop (paper: 320)")
    mimic.add_argument("--seed", type=int, help="seeds the training random crop")
    mimic.add_argument("--workers", type=int, help="parallel decoding processes")
    mimic.add_argument("--eval-batch", type=int, help="evaluation batch size written to metadata")
    # reads only the records of the split rows and notes them: the manifest hashes those
    declare(mimic, selective=["ecg", "cxr"])
    mimic.set_defaults(func=_run_mimic)

    ukb = kinds.add_parser("ukb", help="UK-Biobank-style tensors of one fold (intersect or union)")
    ukb.add_argument("--cohort", type=Path, required=True, help="output folder of `cohort ukb`")
    ukb.add_argument("--variant", choices=setting_choices("ukb.variant"), required=True)
    ukb.add_argument("--fold", type=int, required=True, help="test fold k")
    ukb.add_argument("--out", type=Path, required=True, help="tensor dataset folder")
    ukb.add_argument("--seed", type=int, help="recorded in metadata (nothing is drawn)")
    ukb.add_argument("--ehr-featurizer", help="registered EHR featuriser")
    ukb.add_argument("--ehr-min-count", type=int, help="min training participants/code")
    ukb.add_argument("--ehr-max-codes", type=int, help="vocabulary cap")
    ukb.add_argument("--ehr-dim", type=int, help="TF-IDF + SVD width (0 = multi-hot)")
    ukb.set_defaults(func=_run_ukb)


def _run_mimic(args: argparse.Namespace) -> int:
    from gated_symile.data.mimic.tensors import TensorConfig, build_tensors
    from gated_symile.stages.flags import given

    config = TensorConfig(**given(args, "cxr_size", "seed", "workers", "eval_batch"))
    metadata = build_tensors(args.splits, args.ecg, args.cxr, args.out, config)
    print(json.dumps({"splits": metadata["splits"], "out": str(args.out)}, sort_keys=True))
    return 0


def _run_ukb(args: argparse.Namespace) -> int:
    from gated_symile.data.ukb.ehr import EhrConfig
    from gated_symile.data.ukb.tensors import UkbTensorConfig, build_ukb_tensors

    from gated_symile.stages.flags import given

    ehr = EhrConfig(**given(args, "featurizer", "min_count", "max_codes", "dim", prefix="ehr_"))
    config = UkbTensorConfig(**given(args, "variant", "fold", "seed"), ehr=ehr)
    metadata = build_ukb_tensors(args.cohort, args.out, config)
    print(json.dumps({"splits": metadata["splits"], "out": str(args.out)}, sort_keys=True))
    return 0
