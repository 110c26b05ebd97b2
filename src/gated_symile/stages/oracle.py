"""oracle: Bayes-optimal and best-pairwise top-1 of one synthetic cell, from the generative model.

Reads the evaluation protocol from the tensor dataset(s) of the cell (``--tensors``, one per UKB
fold), the generative model from ``--generator`` (the workflow's ``synth.<family>`` block as inline
JSON; Synthetic-XNOR and binary XOR carry theirs in ``metadata.json``) and the misalignment from the
``--misalign-*`` options (as given to ``misalign``), and writes one JSON document (docs/oracle.md):
``oracle_top1``, ``pairwise_oracle_top1`` (each with ``_se``), ``chance``, ``protocol``, ``n_mc``,
``seed`` and what they were computed from. Only synthetic datasets have an oracle.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from gated_symile.provenance.manifests import declare
    from gated_symile.synthetic.oracle.cells import DATASETS, DEFAULT_N_MC, EXCLUSIVE

    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--p", type=float, required=True, help="misalignment probability of the cell")
    parser.add_argument(
        "--tensors", type=Path, action="append", required=True,
        help="tensor dataset evaluated in this cell (repeat for several UKB folds)",
    )  # fmt: skip
    parser.add_argument(
        "--generator", default="{}", metavar="JSON",
        help="generator settings (synth.<family> of the config) as inline JSON",
    )  # fmt: skip
    parser.add_argument("--misalign-mode", default="swap", help="swap | noise | drop (as misalign --mode)")
    parser.add_argument("--misalign-modalities", default=EXCLUSIVE, help="as misalign --modalities")
    parser.add_argument("--misalign-splits", default="train,val,test", help="as misalign --splits")
    parser.add_argument("--n-mc", type=int, default=DEFAULT_N_MC, help="simulated test queries")
    parser.add_argument("--seed", type=int, default=0, help="Monte Carlo seed")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.set_defaults(func=run)
    declare(parser, inputs=["tensors"])


def run(args: argparse.Namespace) -> int:
    from gated_symile.errors import ConfigError
    from gated_symile.synthetic.oracle.cells import MisalignSettings, oracle_cell

    try:
        generator = json.loads(args.generator)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--generator: inline JSON is invalid ({exc})") from None
    if not isinstance(generator, dict):
        raise ConfigError("--generator: expected a JSON object")
    misalign = MisalignSettings(
        mode=args.misalign_mode,
        modalities=args.misalign_modalities,
        splits=tuple(s.strip() for s in args.misalign_splits.split(",") if s.strip()),
    )
    from gated_symile.data.datasets import load_tensor_dataset

    metadata = [load_tensor_dataset(path).metadata for path in args.tensors]
    doc = oracle_cell(
        args.dataset, args.p, metadata, generator, misalign, n_mc=args.n_mc, seed=args.seed
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(
        f"{args.dataset} p={args.p}: oracle {doc['oracle_top1']:.4f} ± {doc['oracle_top1_se']:.4f}, "
        f"pairwise {doc['pairwise_oracle_top1']:.4f} ± {doc['pairwise_oracle_top1_se']:.4f}, "
        f"chance {doc['chance']:.4f} -> {args.out}"
    )
    return 0

