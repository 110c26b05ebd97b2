# Oracle yardsticks (docs/oracle.md): for every evaluated cell of a synthetic dataset, the top-1 of
# the Bayes-optimal scorer and of the best pairwise scorer, from the generative model, the
# protocol of the cell's tensors and the misalignment settings. Real datasets have no oracle.
import json

from gated_symile.synthetic.oracle import check_testable

# A generator setting under which no claim can be tested stops the run here, naming the setting.
check_testable(config)

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
        for p in dataset_ps(dataset)
    ]


def oracle_tensors(wildcards):
    """The tensor datasets evaluated in the cell (one per UKB fold)."""
    return [
        tensors_dir(wildcards.dataset, wildcards.p, fold)
        for fold in dataset_folds(wildcards.dataset)
    ]


rule oracle:
    input:
        tensors=oracle_tensors,
    output:
        "results/oracle/{dataset}/p{p}.json",
    log:
        "logs/oracle/{dataset}/p{p}.log",
    benchmark:
        "logs/benchmarks/oracle/{dataset}/p{p}.tsv"
    wildcard_constraints:
        dataset="|".join(oracle_datasets()) or "^$",
    conda:
        "../../envs/data.yaml"
    params:
        tensors=lambda wildcards, input: " ".join(
            f"--tensors {t}" for t in input.tensors
        ),
        generator=lambda wildcards: json.dumps(
            config["synth"][ORACLE_GENERATOR[wildcards.dataset]], sort_keys=True
        ),
        mode=config["misalign"]["mode"],
        modalities=config["misalign"]["modalities"],
        splits=",".join(config["misalign"]["splits"]),
        n_mc=config["oracle"]["n_mc"],
        seed=config["oracle"]["seed"],
    shell:
        "gated-symile oracle --dataset {wildcards.dataset} --p {wildcards.p} {params.tensors}"
        " --generator {params.generator:q} --misalign-mode {params.mode}"
        " --misalign-modalities {params.modalities} --misalign-splits {params.splits}"
        " --n-mc {params.n_mc} --seed {params.seed} --out {output} > {log} 2>&1"
