# Results tables and figures over every cell of the grid (mean and standard error over seeds).


rule aggregate:
    input:
        metrics=run_targets("metrics.json"),
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
        "gated-symile aggregate --runs results/runs --out {params.out}"
        " {params.attrition} > {log} 2>&1"
