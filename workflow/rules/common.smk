# Shared helpers: config validation, dataset locations and the run grid.
import json
import re
from pathlib import Path

from snakemake.utils import validate

from gated_symile import layout
from gated_symile.config import resolve_run_config
from gated_symile.run_grid import check_grid, dataset_ps, dataset_seeds
from gated_symile.synthetic.oracle import check_testable
from gated_symile.schemas import SCHEMA_FILE

# The package's settings schema: the same file validates run configs (gated_symile.schemas).
# set_default=False: the schema states no defaults; config.yaml states the workflow's values.
validate(config, schema=str(SCHEMA_FILE), set_default=False)
# A generator setting under which no claim can be tested stops the run here, naming the setting;
# so does a dataset of the grid without misalignment levels or seeds.
check_testable(config)
check_grid(config, config["experiment"]["datasets"])

SYNTHETIC_MIMIC = "resources/raw/mimic"
SYNTHETIC_UKB = "resources/raw/ukb"
DATASETS = ("mimic", "xnor", "xor", "ukb", "ukb_union")
# Synthetic-XNOR draws its corruption inside the generator (swap_signal, docs/method.md §12);
# every other dataset is corrupted by the misalign stage through a manifest.
GENERATOR_MISALIGNED = ("xnor",)
# UK Biobank-style cohorts (intersect, union) are evaluated per participant fold.
UKB_VARIANTS = {"ukb": "intersect", "ukb_union": "union"}


wildcard_constraints:
    dataset="|".join(DATASETS),
    ukb_dataset="|".join(UKB_VARIANTS),
    method="[a-z][a-z0-9_-]*",
    p="[0-9]+(\\.[0-9]+)?",
    fold="[0-9]+",
    cell=layout.CELL_PATTERN,
    source="(mimic|xor)|(ukb|ukb_union)/fold[0-9]+",


def mimic_raw(part):
    """Location of one raw MIMIC release: generated, or the user's real directories."""
    raw = config["raw"]["mimic"]
    if raw["source"] == "synthetic":
        return {
            "mimic_iv": f"{SYNTHETIC_MIMIC}/mimic-iv",
            "ecg": f"{SYNTHETIC_MIMIC}/mimic-iv-ecg",
            "cxr": f"{SYNTHETIC_MIMIC}/mimic-cxr-jpg",
        }[part]
    return raw[part]


def ukb_raw():
    """The UK Biobank-style raw folder: generated, or the user's extraction."""
    raw = config["raw"]["ukb"]
    return SYNTHETIC_UKB if raw["source"] == "synthetic" else raw["path"]


def dataset_folds(dataset):
    """Participant folds for the UKB-style cohorts; one unnamed split elsewhere."""
    return config["ukb"]["folds"] if dataset in UKB_VARIANTS else [None]


def tensors_dir(dataset, p, fold):
    """The clean tensor dataset a run trains on (docs/tensor-format.md)."""
    if dataset in GENERATOR_MISALIGNED:
        return f"results/tensors/{dataset}/p{p}"
    if fold is not None:
        return f"results/tensors/{dataset}/fold{fold}"
    return f"results/tensors/{dataset}"


def misalignment_dir(dataset, p, fold):
    """The misalignment manifest folder of a run, or None where the generator corrupts."""
    if dataset in GENERATOR_MISALIGNED:
        return None
    source = dataset if fold is None else f"{dataset}/fold{fold}"
    return f"results/misalign/{source}/p{p}"


def run_targets(name):
    """One file per cell of the grid datasets x methods x p (x folds) x seeds."""
    exp = config["experiment"]
    return [
        f"{layout.run_dir(dataset, method, p, fold, seed)}/{name}"
        for dataset in exp["datasets"]
        for method in exp["methods"]
        for p in dataset_ps(config, dataset)
        for fold in dataset_folds(dataset)
        for seed in dataset_seeds(config, dataset)
    ]


def run_inputs(wildcards):
    """Tensors, misalignment manifest and MLflow parent run of one cell."""
    p, fold, _ = layout.parse_cell(wildcards.cell)
    inputs = {
        "tensors": tensors_dir(wildcards.dataset, p, fold),
        "parent": layout.parent_run_file(wildcards.dataset, wildcards.method, p),
    }
    manifest = misalignment_dir(wildcards.dataset, p, fold)
    if manifest:
        inputs["misalignment"] = manifest
    return inputs


def misalignment_arg(wildcards, input):
    return (
        f"--misalignment {input.misalignment}" if "misalignment" in input.keys() else ""
    )


def run_dir(wildcards):
    return layout.RUN_PATTERN.format(**wildcards)


def run_config_json(wildcards):
    """Resolved training config of one cell, passed inline so that a change reruns the cell."""
    _, _, seed = layout.parse_cell(wildcards.cell)
    run_cfg = resolve_run_config(config, wildcards.dataset, wildcards.method, seed)
    return json.dumps(run_cfg.to_dict(), sort_keys=True)


# Oracle yardsticks (oracle.smk, docs/oracle.md)
# Which synth block describes each dataset's generator (XNOR and XOR also record theirs in the
# tensors' metadata.json).
ORACLE_GENERATOR = {
    "mimic": "mimic",
    "xnor": "xnor",
    "xor": "xor",
    "ukb": "ukb",
    "ukb_union": "ukb",
}


def oracle_datasets():
    """Grid datasets built from a generator: MIMIC and UKB only when their source is synthetic."""
    raw = config["raw"]
    synthetic = {
        "mimic": raw["mimic"]["source"] == "synthetic",
        "ukb": raw["ukb"]["source"] == "synthetic",
        "ukb_union": raw["ukb"]["source"] == "synthetic",
    }
    return [d for d in config["experiment"]["datasets"] if synthetic.get(d, True)]


def oracle_targets():
    """One JSON per (synthetic dataset, p): results/oracle/{dataset}/p{p}.json."""
    return [
        f"results/oracle/{dataset}/p{p}.json"
        for dataset in oracle_datasets()
        for p in dataset_ps(config, dataset)
    ]


def oracle_tensors(wildcards):
    """The tensor datasets evaluated in the cell (one per UKB fold)."""
    return [
        tensors_dir(wildcards.dataset, wildcards.p, fold)
        for fold in dataset_folds(wildcards.dataset)
    ]


def tracking_uri():
    """Absolute tracking URI: relative sqlite paths resolve against the working directory."""
    uri = config["tracking"]["uri"]
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith("sqlite:////"):
        return f"{prefix}{Path(uri[len(prefix) :]).resolve()}"
    return uri
