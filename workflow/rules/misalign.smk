# Misalignment manifests (docs/method.md §10): per dataset (and fold) and p, which samples have
# a swapped, noised or dropped modality. The clean tensors are never modified.


rule misalign:
    input:
        tensors="results/tensors/{source}",
    output:
        directory("results/misalign/{source}/p{p}"),
    log:
        "logs/misalign/{source}/p{p}.log",
    benchmark:
        "benchmarks/workflow/misalign/{source}/p{p}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        mode=config["misalign"]["mode"],
        modalities=config["misalign"]["modalities"],
        splits=",".join(config["misalign"]["splits"]),
        seed=config["misalign"]["seed"],
        exclude_same_subject=(
            "--exclude-same-subject"
            if config["misalign"]["exclude_same_subject"]
            else ""
        ),
    shell:
        "gated-symile misalign --tensors {input.tensors} --out {output} --p {wildcards.p}"
        " --mode {params.mode} --modalities {params.modalities} --splits {params.splits}"
        " --seed {params.seed} {params.exclude_same_subject} > {log} 2>&1"
