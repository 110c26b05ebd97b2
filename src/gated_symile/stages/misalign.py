"""misalign: draw a misalignment manifest (swap, noise or drop) for a tensor dataset.

Writes ``OUT/manifest_<split>.parquet`` for every split of the dataset (splits not listed in
``--splits`` get all-clean manifests), ``OUT/misalign.json`` (parameters, counts, the source
``metadata.json`` sha256) and, for ``--mode noise``, the train-split standardisation statistics
of the float modalities (``noise_mean_<m>.npy``, ``noise_std_<m>.npy``). The clean tensors are
only read; training and evaluation apply the manifest when loading (docs/method.md §10).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from gated_symile.data.misalign.draw import EXCLUSIVE, MisalignConfig
    from gated_symile.stages.flags import field_default, setting_choices

    parser.add_argument("--tensors", type=Path, required=True, help="clean tensor dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="misalignment folder to write")
    parser.add_argument("--p", type=float, required=True, help="per-sample corruption probability")
    parser.add_argument("--mode", choices=setting_choices("misalign.mode"), required=True,
                        help="swap (misleading), noise (uninformative) or drop (marked missing)")
    default_splits = ",".join(field_default(MisalignConfig, "splits"))
    parser.add_argument("--modalities",
                        help=f"{EXCLUSIVE!r} (one non-target modality per corrupted sample, default) "
                        "or comma-separated names, each corrupted independently with probability p")
    parser.add_argument("--splits",
                        help=f"comma-separated splits to corrupt (default {default_splits}; e.g. train)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--exclude-same-subject", action="store_true",
                        help="swap donors never share the sample's subject_id (index column)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gated_symile.data.misalign.draw import MisalignConfig
    from gated_symile.stages.flags import given

    settings = given(args, "p", "mode", "seed")
    settings.update({k: _names(v) for k, v in given(args, "modalities", "splits").items()})
    cfg = MisalignConfig(**settings, exclude_same_subject=args.exclude_same_subject)
    spec = write_misalignment(args.tensors, args.out, cfg)
    print(json.dumps({"out": str(args.out), "counts": spec["counts"]}, indent=2, sort_keys=True))
    return 0


def write_misalignment(tensors: Path, out: Path, cfg: Any) -> dict[str, Any]:
    """Draw every split's manifest for ``cfg`` and write the folder ``out``; returns ``misalign.json``.

    ``out`` is built beside its final name and moved there when complete (``gated_symile.outputs``);
    an earlier misalignment folder is replaced, anything else refused.
    """
    from gated_symile.data.misalign.store import SPEC_FILE
    from gated_symile.outputs import staged_folder

    _check_outside(out, tensors)
    with staged_folder(out, markers=[SPEC_FILE], what="misalignment folder") as work:
        return _draw_into(Path(tensors), work, cfg)


def _draw_into(tensors: Path, out: Path, cfg: Any) -> dict[str, Any]:
    import numpy as np

    from gated_symile.data.datasets import load_tensor_dataset
    from gated_symile.errors import GatedSymileError
    from gated_symile.data.misalign.draw import STATS_SPLIT, draw_manifest, feature_stats, manifest_counts
    from gated_symile.data.misalign.store import SPEC_FILE, manifest_file, noise_stat_files, spec_document, write_manifest
    from gated_symile.provenance.hashing import file_sha256
    from gated_symile.data.tensor_format import METADATA_FILE

    dataset = load_tensor_dataset(tensors)
    unknown = sorted(set(cfg.splits) - set(dataset.split_sizes))
    if unknown:
        raise GatedSymileError(f"{tensors}: splits {unknown} not in the dataset {sorted(dataset.split_sizes)}")
    corruptible = cfg.corruptible(dataset.modalities, dataset.target)

    counts = {}
    for name in sorted(dataset.split_sizes):
        split = dataset.split(name)
        subjects = None
        if cfg.exclude_same_subject:
            if "subject_id" not in split.index.columns:
                raise GatedSymileError(f"{split.path}/index.parquet: --exclude-same-subject needs a subject_id column")
            subjects = split.index["subject_id"].to_numpy()
        manifest = draw_manifest(
            cfg, name, split.index["sample_id"].to_numpy(), dataset.modalities, dataset.target, subjects
        )
        write_manifest(manifest, Path(out) / manifest_file(name))
        counts[name] = manifest_counts(manifest, dataset.modalities)

    stats_for = []
    if cfg.mode == "noise":
        stats_for = [m for m in corruptible if dataset.inputs[m]["kind"] == "float32"]
        if stats_for and STATS_SPLIT not in dataset.split_sizes:
            raise GatedSymileError(f"{tensors}: noise standardisation needs a {STATS_SPLIT!r} split")
        for m in stats_for:
            train = dataset.split(STATS_SPLIT)
            for array, name in zip(feature_stats(train.arrays[m], train.present[m]), noise_stat_files(m)):
                np.save(Path(out) / name, array, allow_pickle=False)

    sha = file_sha256(Path(tensors) / METADATA_FILE)
    spec = spec_document(cfg, dataset.metadata, sha, counts, stats_for)
    (Path(out) / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return spec


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _check_outside(out: Path, tensors: Path) -> None:
    """``out`` may not be the dataset folder or lie inside it: the clean tensors must stay untouched."""
    from gated_symile.errors import GatedSymileError

    out_abs, tensors_abs = Path(out).resolve(), Path(tensors).resolve()
    if out_abs == tensors_abs or tensors_abs in out_abs.parents:
        raise GatedSymileError(f"{out}: the misalignment folder must lie outside the dataset {tensors}")
