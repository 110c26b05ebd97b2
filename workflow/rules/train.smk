# One training job per cell (dataset, method, p, fold, seed); GPU resources come from the
# cluster profile.


rule train:
    input:
        unpack(run_inputs),
    output:
        summary="results/runs/{dataset}/{method}/{cell}/train_summary.json",
        best="results/runs/{dataset}/{method}/{cell}/checkpoints/best.pt",
    log:
        "logs/train/{dataset}/{method}/{cell}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}/{method}/{cell}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    params:
        misalignment=misalignment_arg,
        run_config=run_config_json,
        run_dir=run_dir,
        uri=tracking_uri(),
        experiment=config["tracking"]["experiment"],
    shell:
        "OMP_NUM_THREADS={threads} gated-symile train --tensors {input.tensors} {params.misalignment}"
        " --run-config {params.run_config:q} --out {params.run_dir}"
        " --tracking-uri {params.uri:q} --experiment {params.experiment:q}"
        " --parent-run-id-file {input.parent} --tag snakemake.rule=train > {log} 2>&1"
