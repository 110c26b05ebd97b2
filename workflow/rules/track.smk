# MLflow store: created once before any training job, so parallel jobs never race on a fresh
# database; one parent run per (dataset, method, p) groups the seeds.


localrules:
    track_init,
    track_parent,


rule track_init:
    output:
        "results/mlflow/store.json",
    log:
        "logs/track/init.log",
    benchmark:
        "logs/benchmarks/track_init.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        uri=tracking_uri(),
        experiment=config["tracking"]["experiment"],
    shell:
        "gated-symile track init --uri {params.uri:q} --experiment {params.experiment:q}"
        " --out {output} > {log} 2>&1"


rule track_parent:
    input:
        store="results/mlflow/store.json",
    output:
        layout.parent_run_file("{dataset}", "{method}", "{p}"),
    log:
        "logs/track/parent_{dataset}_{method}_p{p}.log",
    benchmark:
        "logs/benchmarks/track_parent_{dataset}_{method}_p{p}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        uri=tracking_uri(),
        experiment=config["tracking"]["experiment"],
    shell:
        "gated-symile track parent --uri {params.uri:q} --experiment {params.experiment:q}"
        " --name {wildcards.dataset}/{wildcards.method}/p{wildcards.p}"
        " --tags dataset={wildcards.dataset} method={wildcards.method} p={wildcards.p}"
        " --out {output} > {log} 2>&1"
