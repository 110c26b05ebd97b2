# Oracle yardsticks (docs/oracle.md): for every evaluated cell of a synthetic dataset, the top-1 of
# the Bayes-optimal scorer and of the best pairwise scorer, from the generative model, the
# protocol of the cell's tensors and the misalignment settings. Real datasets have no oracle.
import json


rule oracle:
    input:
        tensors=oracle_tensors,
    output:
        "results/oracle/{dataset}/p{p}.json",
    log:
        "logs/oracle/{dataset}/p{p}.log",
    benchmark:
        "benchmarks/workflow/oracle/{dataset}/p{p}.tsv"
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
