# Zero-shot retrieval on the test split (docs/method.md §11), logged into the training run;
# ranks.parquet holds each test query's rank for the paired method contrasts of aggregate.


rule evaluate:
    input:
        unpack(run_inputs),
        best=layout.run_file("checkpoints/best.pt"),
        summary=layout.run_file("train_summary.json"),  # names the MLflow run
        manifest=layout.run_file("provenance.json"),  # logged beside the metrics
    output:
        metrics=layout.run_file("metrics.json"),
        ranks=layout.run_file("ranks.parquet"),
    log:
        "logs/evaluate/{dataset}/{method}/{cell}.log",
    benchmark:
        "logs/benchmarks/evaluate/{dataset}/{method}/{cell}.tsv"
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
        " --out-ranks {output.ranks}"
        " --bootstrap-n {params.bootstrap_n} --seed {params.seed}"
        " --tracking-uri {params.uri:q} > {log} 2>&1"
