# Symile-MIMIC cohort: one admission per row with its CXR, ECG and 50 labs (docs/data.md §4).


rule cohort_mimic:
    input:
        mimic_iv=mimic_raw("mimic_iv"),
        ecg=mimic_raw("ecg"),
        cxr=mimic_raw("cxr"),
    output:
        cohort="results/mimic/cohort/cohort.parquet",
        exclusions="results/mimic/cohort/exclusions.parquet",
        attrition=report(
            "results/mimic/cohort/attrition.csv",
            caption="../report/attrition.rst",
            category="Cohort",
        ),
        attrition_notes="results/mimic/cohort/attrition_notes.txt",  # what the counts cannot show
        summary="results/mimic/cohort/summary.json",  # counts, records opened, inputs, parameters
    log:
        "logs/mimic/cohort.log",
    benchmark:
        "logs/benchmarks/cohort_mimic.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    params:
        out=lambda wildcards, output: Path(output.cohort).parent,
        qc_rule=config["mimic"]["cohort"]["qc_rule"],
    shell:
        "gated-symile cohort mimic --mimic-iv {input.mimic_iv:q} --ecg {input.ecg:q}"
        " --cxr {input.cxr:q} --out {params.out} --workers {threads}"
        " --qc-rule {params.qc_rule} > {log} 2>&1"


rule cohort_ukb:
    input:
        raw=ukb_raw(),
    output:
        directory("results/ukb/cohort"),
    log:
        "logs/ukb/cohort.log",
    benchmark:
        "logs/benchmarks/cohort_ukb.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    params:
        n_folds=config["ukb"]["n_folds"],
        val_frac=config["ukb"]["val_frac"],
        seed=config["ukb"]["seed"],
    shell:
        "gated-symile cohort ukb --raw {input.raw:q} --out {output}"
        " --n-folds {params.n_folds} --val-frac {params.val_frac} --seed {params.seed}"
        " --threads {threads} > {log} 2>&1"
