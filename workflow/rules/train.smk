# One training job per cell (dataset, method, p, fold, seed); GPU resources come from the
# cluster profile. A cell with train.devices x train.nodes > 1 runs as that many processes,
# started by train.launcher (docs/distributed.md): torchrun inside one task that holds the
# node's GPUs, or srun with one task per GPU (the tasks/mpi resources, read by
# snakemake-executor-plugin-slurm; locally only `gpu` = devices x nodes counts, for
# `--resources gpu=N`).
from gated_symile.training import launch

CELL_TRAIN = lambda wildcards: resolve_run_config(
    config, wildcards.dataset, wildcards.method, layout.parse_cell(wildcards.cell)[2]
).train
DEFAULT_LAUNCHER = config["train"].get("launcher", "none")


rule train:
    input:
        unpack(run_inputs),
    output:
        summary=layout.run_file("train_summary.json"),
        best=layout.run_file("checkpoints/best.pt"),
        manifest=layout.run_file("provenance.json"),
    log:
        "logs/train/{dataset}/{method}/{cell}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}/{method}/{cell}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        **launch.rule_resources(DEFAULT_LAUNCHER, CELL_TRAIN),
    params:
        launcher=launch.rule_launcher(DEFAULT_LAUNCHER, CELL_TRAIN),
        misalignment=misalignment_arg,
        run_config=run_config_json,
        run_dir=run_dir,
        uri=tracking_uri(),
        experiment=config["tracking"]["experiment"],
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} train --tensors {input.tensors}"
        " {params.misalignment} --run-config {params.run_config:q} --out {params.run_dir}"
        " --tracking-uri {params.uri:q} --experiment {params.experiment:q}"
        " --parent-run-id-file {input.parent} --tag snakemake.rule=train > {log} 2>&1"
