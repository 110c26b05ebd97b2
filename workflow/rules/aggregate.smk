# Results tables and figures over every cell of the grid (mean and standard error over seeds,
# paired method contrasts). The stage reads exactly the declared runs: a run folder left from an
# earlier grid (a seed, p or method removed from the config) stays out of the tables.


rule aggregate:
    input:
        metrics=run_targets("metrics.json"),
        ranks=run_targets("ranks.parquet"),
        oracle=oracle_targets(),
        attrition=(
            ["results/mimic/cohort/attrition.csv"]
            if "mimic" in config["experiment"]["datasets"]
            else []
        ),
    output:
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Results",
        ),
        markdown="results/tables/summary.md",
        contrasts=report(
            "results/tables/contrasts.csv",
            caption="../report/contrasts.rst",
            category="Results",
        ),
        provenance=report(
            "results/tables/provenance.md",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
        figures=report(
            directory("results/tables/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        "logs/aggregate.log",
    benchmark:
        "logs/benchmarks/aggregate.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        out=lambda wildcards, output: Path(output.summary).parent,
        attrition=lambda wildcards, input: (
            f"--attrition {input.attrition}" if input.attrition else ""
        ),
    shell:
        "gated-symile aggregate --metrics {input.metrics:q} --ranks {input.ranks:q}"
        " --oracle {input.oracle:q} --out {params.out:q}"
        " {params.attrition} > {log} 2>&1"
