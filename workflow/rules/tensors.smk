# Model-ready tensors per split: CXR crops, normalised ECGs, lab percentiles (docs/data.md §7).


rule tensors_mimic:
    input:
        splits="results/mimic/splits",
        ecg=mimic_raw("ecg"),
        cxr=mimic_raw("cxr"),
    output:
        directory("results/tensors/mimic"),
    log:
        "logs/mimic/tensors.log",
    benchmark:
        "logs/benchmarks/tensors_mimic.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    params:
        cxr_size=config["mimic"]["tensors"]["cxr_size"],
        seed=config["mimic"]["tensors"]["seed"],
    shell:
        "gated-symile tensors mimic --splits {input.splits} --ecg {input.ecg:q}"
        " --cxr {input.cxr:q} --out {output} --cxr-size {params.cxr_size}"
        " --seed {params.seed} --workers {threads} > {log} 2>&1"


rule tensors_ukb:
    input:
        cohort="results/ukb/cohort",
    output:
        directory("results/tensors/{ukb_dataset}/fold{fold}"),
    log:
        "logs/ukb/tensors_{ukb_dataset}_fold{fold}.log",
    benchmark:
        "logs/benchmarks/tensors_{ukb_dataset}_fold{fold}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        variant=lambda wildcards: UKB_VARIANTS[wildcards.ukb_dataset],
        seed=config["ukb"]["seed"],
        featurizer=config["ukb"]["ehr"]["featurizer"],
        min_count=config["ukb"]["ehr"]["min_count"],
        max_codes=config["ukb"]["ehr"]["max_codes"],
        dim=config["ukb"]["ehr"]["dim"],
    shell:
        "gated-symile tensors ukb --cohort {input.cohort} --variant {params.variant}"
        " --fold {wildcards.fold} --out {output} --seed {params.seed}"
        " --ehr-featurizer {params.featurizer} --ehr-min-count {params.min_count}"
        " --ehr-max-codes {params.max_codes} --ehr-dim {params.dim} > {log} 2>&1"
