# Synthetic data: raw MIMIC-style releases, Synthetic-XNOR and binary XOR tensors.


rule synth_mimic:
    output:
        mimic_iv=directory(f"{SYNTHETIC_MIMIC}/mimic-iv"),
        ecg=directory(f"{SYNTHETIC_MIMIC}/mimic-iv-ecg"),
        cxr_dicom=directory(f"{SYNTHETIC_MIMIC}/mimic-cxr"),
        cxr_jpg=directory(f"{SYNTHETIC_MIMIC}/mimic-cxr-jpg"),
    log:
        "logs/synth/mimic.log",
    benchmark:
        "logs/benchmarks/synth_mimic.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    params:
        out=lambda wildcards, output: Path(output.mimic_iv).parent,
        admissions=config["synth"]["mimic"]["admissions"],
        seed=config["synth"]["mimic"]["seed"],
        signal_strength=config["synth"]["mimic"]["signal_strength"],
        image_size=config["synth"]["mimic"]["image_size"],
    shell:
        "gated-symile synth mimic --out {params.out} --admissions {params.admissions}"
        " --seed {params.seed} --signal-strength {params.signal_strength}"
        " --image-size {params.image_size} --workers {threads} > {log} 2>&1"


rule synth_xnor:
    output:
        directory("results/tensors/xnor/p{p}"),
    log:
        "logs/synth/xnor_p{p}.log",
    benchmark:
        "logs/benchmarks/synth_xnor_p{p}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        n_samples=config["synth"]["xnor"]["n_samples"],
        n_bits=config["synth"]["xnor"]["n_bits"],
        dim=config["synth"]["xnor"]["dim"],
        corr_mode=config["synth"]["xnor"]["corr_mode"],
        eval_batch=config["synth"]["xnor"]["eval_batch"],
        seed=config["synth"]["xnor"]["seed"],
    shell:
        "gated-symile synth xnor --out {output} --p {wildcards.p}"
        " --n-samples {params.n_samples} --n-bits {params.n_bits} --dim {params.dim}"
        " --corr-mode {params.corr_mode} --eval-batch {params.eval_batch}"
        " --seed {params.seed} > {log} 2>&1"


rule synth_xor:
    output:
        directory("results/tensors/xor"),
    log:
        "logs/synth/xor.log",
    benchmark:
        "logs/benchmarks/synth_xor.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        d=config["synth"]["xor"]["d"],
        p_hat=config["synth"]["xor"]["p_hat"],
        n_train=config["synth"]["xor"]["n_train"],
        n_val=config["synth"]["xor"]["n_val"],
        n_test=config["synth"]["xor"]["n_test"],
        seed=config["synth"]["xor"]["seed"],
    shell:
        "gated-symile synth xor --out {output} --d {params.d} --p-hat {params.p_hat}"
        " --n-train {params.n_train} --n-val {params.n_val} --n-test {params.n_test}"
        " --seed {params.seed} > {log} 2>&1"


rule synth_ukb:
    output:
        directory(SYNTHETIC_UKB),
    log:
        "logs/synth/ukb.log",
    benchmark:
        "logs/benchmarks/synth_ukb.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    params:
        participants=config["synth"]["ukb"]["participants"],
        seed=config["synth"]["ukb"]["seed"],
        n_proteins=config["synth"]["ukb"]["n_proteins"],
        olink_frac=config["synth"]["ukb"]["olink_frac"],
        signal_strength=config["synth"]["ukb"]["signal_strength"],
    shell:
        "gated-symile synth ukb --out {output} --participants {params.participants}"
        " --seed {params.seed} --n-proteins {params.n_proteins}"
        " --olink-frac {params.olink_frac} --signal-strength {params.signal_strength}"
        " --workers {threads} > {log} 2>&1"
