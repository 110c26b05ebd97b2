# Zero-shot retrieval on the test split (docs/method.md §11), logged into the training run.


rule evaluate:
    input:
        unpack(run_inputs),
        best="results/runs/{dataset}/{method}/{cell}/checkpoints/best.pt",
    output:
        metrics="results/runs/{dataset}/{method}/{cell}/metrics.json",
    log:
        "logs/evaluate/{dataset}/{method}/{cell}.log",
    benchmark:
        "benchmarks/workflow/evaluate/{dataset}/{method}/{cell}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    params:
        misalignment=misalignment_arg,
        run_dir=run_dir,
        uri=tracking_uri(),
        bootstrap_n=config["evaluate"]["bootstrap_n"],
        seed=config["evaluate"]["seed"],
    shell:
        "OMP_NUM_THREADS={threads} gated-symile evaluate --run {params.run_dir} --tensors {input.tensors}"
        " {params.misalignment} --split test --out {output.metrics}"
        " --bootstrap-n {params.bootstrap_n} --seed {params.seed}"
        " --tracking-uri {params.uri:q} > {log} 2>&1"
