# One training job per cell (dataset, method, p, fold, seed); GPU resources come from the
# cluster profile. A cell with train.devices x train.nodes > 1 runs as that many processes,
# started by train.launcher (docs/distributed.md): torchrun inside one task that holds the
# node's GPUs, or srun with one task per GPU (the tasks/mpi resources below, read by
# snakemake-executor-plugin-slurm; locally only `gpu` matters, as `--resources gpu=N`).
from gated_symile.training.launch import launch_prefix, slurm_resources


def cell_train_config(wildcards):
    _, _, seed = parse_cell(wildcards.cell)
    return resolve_run_config(config, wildcards.dataset, wildcards.method, seed).train


def cell_resource(name):
    """A rule resource computed from the cell's resolved ``train`` settings."""
    value = slurm_resources(config["train"].get("launcher", "none"))[name]
    return lambda wildcards: value(cell_train_config(wildcards))


def cell_launcher(wildcards, resources):
    """gated-symile, or the torchrun / srun command that starts the cell's processes."""
    return launch_prefix(cell_train_config(wildcards), int(resources.get("gpu", 0)))


rule train:
    input:
        unpack(run_inputs),
    output:
        summary="results/runs/{dataset}/{method}/{cell}/train_summary.json",
        best="results/runs/{dataset}/{method}/{cell}/checkpoints/best.pt",
    log:
        "logs/train/{dataset}/{method}/{cell}.log",
    benchmark:
        "benchmarks/workflow/train/{dataset}/{method}/{cell}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=lambda wildcards: cell_train_config(wildcards).world_size,
        **{
            name: cell_resource(name)
            for name in slurm_resources(config["train"].get("launcher", "none"))
        },
    params:
        launcher=cell_launcher,
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
