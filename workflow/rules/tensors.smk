# Model-ready tensors per split: CXR crops, normalised ECGs, lab percentiles (data.md section 7).


rule tensors_mimic:
    input:
        splits="results/mimic/splits",
        ecg=mimic_raw("ecg"),
        cxr=mimic_raw("cxr"),
    output:
        directory("results/tensors/mimic"),
    log:
        "logs/mimic/tensors.log",
    benchmark:
        "benchmarks/workflow/tensors_mimic.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    params:
        cxr_size=config["mimic"]["tensors"]["cxr_size"],
        seed=config["mimic"]["tensors"]["seed"],
    shell:
        "gated-symile tensors mimic --splits {input.splits} --ecg {input.ecg}"
        " --cxr {input.cxr} --out {output} --cxr-size {params.cxr_size}"
        " --seed {params.seed} --workers {threads} > {log} 2>&1"
