"""Pipeline stages: one module per stage, one CLI subcommand and one Snakemake rule file each.

Every stage module exposes ``configure_parser(parser)`` (adds its arguments, or its own
sub-commands) and sets ``func`` on the parsed namespace.  Heavy imports (torch, duckdb, pydicom)
happen inside the functions so that ``gated-symile --help`` stays fast.
"""

STAGES: tuple[str, ...] = (
    "synth",
    "inspect",
    "cohort",
    "splits",
    "tensors",
    "misalign",
    "oracle",
    "train",
    "evaluate",
    "aggregate",
    "track",
    "audit",
)
