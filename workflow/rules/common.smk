# Shared helpers: config validation, dataset locations and the run grid.
import json
from pathlib import Path

from snakemake.utils import validate

from gated_symile.config import resolve_run_config

validate(config, schema="../schemas/config.schema.yaml")

SYNTHETIC_MIMIC = "resources/raw/mimic"


wildcard_constraints:
    dataset="|".join(["mimic", "xnor", "xor"]),
    method="[a-z][a-z0-9_-]*",
    p="[0-9]+(\\.[0-9]+)?",
    seed="[0-9]+",


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


def dataset_ps(dataset):
    """Misalignment levels of one dataset: its own list, else the experiment's."""
    return config["datasets"].get(dataset, {}).get("p", config["experiment"]["p"])


# Synthetic-XNOR draws its corruption inside the generator (swap_signal, method.md section 12);
# every other dataset is corrupted by the misalign stage through a manifest.
GENERATOR_MISALIGNED = ("xnor",)


def tensors_dir(dataset, p):
    """The clean tensor dataset a run trains on (docs/tensor-format.md)."""
    if dataset in GENERATOR_MISALIGNED:
        return f"results/tensors/{dataset}/p{p}"
    return f"results/tensors/{dataset}"


def misalignment_dir(dataset, p):
    """The misalignment manifest folder of a run, or None where the generator corrupts."""
    if dataset in GENERATOR_MISALIGNED:
        return None
    return f"results/misalign/{dataset}/p{p}"


def run_inputs(wildcards):
    """Tensors (and misalignment manifest) of one cell of the grid."""
    inputs = {"tensors": tensors_dir(wildcards.dataset, wildcards.p)}
    manifest = misalignment_dir(wildcards.dataset, wildcards.p)
    if manifest:
        inputs["misalignment"] = manifest
    return inputs


def misalignment_arg(wildcards, input):
    return (
        f"--misalignment {input.misalignment}" if "misalignment" in input.keys() else ""
    )


def run_dir(wildcards):
    return f"results/runs/{wildcards.dataset}/{wildcards.method}/p{wildcards.p}/seed{wildcards.seed}"


def run_targets(name):
    """One file per cell of the grid datasets x methods x p x seeds."""
    exp = config["experiment"]
    return [
        f"results/runs/{dataset}/{method}/p{p}/seed{seed}/{name}"
        for dataset in exp["datasets"]
        for method in exp["methods"]
        for p in dataset_ps(dataset)
        for seed in exp["seeds"]
    ]


def run_config_json(wildcards):
    """Resolved training config of one cell, passed inline so that a change reruns the cell."""
    run_cfg = resolve_run_config(
        config, wildcards.dataset, wildcards.method, int(wildcards.seed)
    )
    return json.dumps(run_cfg.to_dict(), sort_keys=True)


def tracking_uri():
    """Absolute tracking URI: relative sqlite paths resolve against the working directory."""
    uri = config["tracking"]["uri"]
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri
