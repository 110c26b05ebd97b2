# One training job per (dataset, method, p, seed); GPU resources come from the cluster profile.


rule train:
    input:
        unpack(run_inputs),
        parent="results/runs/{dataset}/{method}/p{p}/parent_run_id.txt",
    output:
        summary="results/runs/{dataset}/{method}/p{p}/seed{seed}/train_summary.json",
        best="results/runs/{dataset}/{method}/p{p}/seed{seed}/checkpoints/best.pt",
    log:
        "logs/train/{dataset}_{method}_p{p}_seed{seed}.log",
    benchmark:
        "benchmarks/workflow/train_{dataset}_{method}_p{p}_seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        misalignment=misalignment_arg,
        run_config=run_config_json,
        run_dir=run_dir,
        uri=tracking_uri(),
        experiment=config["tracking"]["experiment"],
    shell:
        "gated-symile train --tensors {input.tensors} {params.misalignment} --run-config {params.run_config:q}"
        " --out {params.run_dir} --tracking-uri {params.uri:q}"
        " --experiment {params.experiment:q} --parent-run-id-file {input.parent}"
        " --tag snakemake.rule=train > {log} 2>&1"
