"""MLflow store set-up: ``track init`` (database + experiment) and ``track parent`` (parent run).

``init`` runs once before any training job so that parallel jobs never race on creating a fresh
SQLite database (docs/ecosystem.md §9); ``parent`` creates the run that a group of seed runs attach to.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    init = actions.add_parser("init", help="create the tracking database and the experiment")
    init.add_argument(
        "--uri", required=True, help="tracking URI, e.g. sqlite:///results/mlflow/mlflow.db"
    )
    init.add_argument("--experiment", required=True)
    init.add_argument(
        "--out", type=Path, required=True, metavar="FLAG", help="flag file (JSON) to write"
    )
    init.set_defaults(func=_run_init)

    parent = actions.add_parser("parent", help="create a parent run and write its run id")
    parent.add_argument("--uri", required=True)
    parent.add_argument("--experiment", required=True)
    parent.add_argument("--name", required=True, help="run name, e.g. xnor/gated_symile/p0.5")
    parent.add_argument("--tags", nargs="*", default=[], metavar="KEY=VALUE")
    parent.add_argument("--out", type=Path, required=True, metavar="RUN_ID_FILE")
    parent.set_defaults(func=_run_parent)


def _run_init(args: argparse.Namespace) -> int:
    from gated_symile.outputs import output_file, write_json
    from gated_symile.provenance.track import init_store, resolve_tracking_uri

    output_file(args.out)
    uri = resolve_tracking_uri(args.uri)
    experiment_id = init_store(uri, args.experiment)
    flag = {"tracking_uri": uri, "experiment": args.experiment, "experiment_id": experiment_id}
    write_json(args.out, flag)
    print(json.dumps(flag, sort_keys=True))
    return 0


def _run_parent(args: argparse.Namespace) -> int:
    from gated_symile.outputs import output_file, write_text
    from gated_symile.provenance.track import create_parent_run, parse_tags

    output_file(args.out)
    run_id = create_parent_run(args.uri, args.experiment, args.name, parse_tags(args.tags))
    write_text(args.out, run_id + "\n")
    print(run_id)
    return 0
