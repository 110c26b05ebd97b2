# Zero-shot retrieval on the test split (docs/method.md §11), logged into the training run;
# ranks.parquet holds each test query's rank for the paired method contrasts of aggregate.


rule evaluate:
    input:
        unpack(run_inputs),
        best=layout.RUN_PATTERN + "/checkpoints/best.pt",
        summary=layout.RUN_PATTERN + "/train_summary.json",  # names the MLflow run
        manifest=layout.RUN_PATTERN + "/provenance.json",  # logged beside the metrics
    output:
        metrics=layout.RUN_PATTERN + "/metrics.json",
        ranks=layout.RUN_PATTERN + "/ranks.parquet",
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
