# Patient-disjoint train/val/test splits, retrieval candidates and lab percentiles (docs/data.md §6).


rule splits_mimic:
    input:
        cohort="results/mimic/cohort/cohort.parquet",
    output:
        directory("results/mimic/splits"),
    log:
        "logs/mimic/splits.log",
    benchmark:
        "benchmarks/workflow/splits_mimic.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        seed=config["mimic"]["split"]["seed"],
        train_n=config["mimic"]["split"]["train_n"],
        val_n=config["mimic"]["split"]["val_n"],
        candidate_n=config["mimic"]["split"]["candidate_n"],
    shell:
        "gated-symile splits mimic --cohort {input.cohort} --out {output}"
        " --seed {params.seed} --train-n {params.train_n} --val-n {params.val_n}"
        " --candidate-n {params.candidate_n} > {log} 2>&1"
