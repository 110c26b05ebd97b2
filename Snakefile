# gated-symile: raw records -> cohort -> splits -> tensors -> training -> retrieval evaluation.
# Every rule is a thin call to a `gated-symile <stage>` subcommand (see README.md).
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The default config sits beside this Snakefile, so `--directory` runs find it too;
# `--configfile FILE` is merged over it.
configfile: Path(workflow.basedir) / "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/tensors.smk"
include: "workflow/rules/misalign.smk"
include: "workflow/rules/oracle.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        run_targets("metrics.json"),
        oracle_targets(),
        "results/tables/summary.csv",
