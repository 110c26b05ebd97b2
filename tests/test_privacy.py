"""No record-level identifier leaves the machine through what is meant to be shared.

Credentialed-data agreements (MIMIC, UK Biobank) forbid sharing record-level data, and tracking
servers and HTML reports are shared. After a tiny run of the MIMIC-style chain (``tiny_workflow``)
the MLflow store (database, every param, tag and metric, every artifact) and the Snakemake report
must hold no ``subject_id`` or ``hadm_id`` of the admissions table, and the README's ``mlflow ui``
command must bind to localhost.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.workflow_helpers import REPO

pytestmark = pytest.mark.slow

_NUMBER = re.compile(rb"(?<![0-9])[0-9]{6,}(?![0-9])")
_BASE64 = re.compile(rb"base64,([A-Za-z0-9+/=]+)")


def identifiers(workdir: Path) -> set[bytes]:
    """Every subject_id and hadm_id of the raw admissions table (the cohort and all it excluded)."""
    table = pd.read_csv(workdir / "resources/raw/mimic/mimic-iv/hosp/admissions.csv.gz")
    ids = set(table["subject_id"]) | set(table["hadm_id"])
    assert len(ids) > 60 and all(i >= 10**6 for i in ids)  # long enough never to be a small count
    return {str(i).encode() for i in ids}


def leaked(data: bytes, ids: set[bytes]) -> set[bytes]:
    """Identifiers written as a whole number in ``data`` or in a base64 payload inside it."""
    found = set(_NUMBER.findall(data))
    for payload in _BASE64.findall(data):
        found |= set(_NUMBER.findall(base64.b64decode(payload + b"=" * (-len(payload) % 4))))
    return found & ids


def test_the_mlflow_store_holds_no_record_identifier(tiny_workflow):
    from mlflow.tracking import MlflowClient

    ids = identifiers(tiny_workflow)
    store = tiny_workflow / "results/mlflow"
    files = [p for p in store.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any("artifacts" in p.parts for p in files)
    for path in files:
        assert not leaked(path.read_bytes(), ids), path

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) >= 4  # 2 parents + 2 training runs
    for run in runs:
        text = repr((run.info.run_name, run.data.params, run.data.tags, run.inputs)).encode()
        assert not leaked(text, ids), run.info.run_id
        assert not {str(int(v)).encode() for v in run.data.metrics.values() if float(v).is_integer()} & ids


def test_the_report_holds_no_record_identifier(tiny_workflow):
    report = tiny_workflow / "results/report.html"
    data = report.read_bytes()
    assert _BASE64.search(data) or len(data) > 10_000  # the report embeds its results
    assert not leaked(data, identifiers(tiny_workflow))


def test_the_scan_finds_an_identifier_where_there_is_one(tiny_workflow):
    """The scan itself works: an id written plainly or inside a base64 payload is found."""
    ids = identifiers(tiny_workflow)
    one = sorted(ids)[0]
    assert leaked(b"subject " + one + b".0,", ids) == {one}
    assert leaked(b"data:text/csv;base64," + base64.b64encode(b"id\n" + one + b"\n"), ids) == {one}
    assert not leaked(b"x" + one + b"7", ids)


def test_mlflow_ui_instructions_bind_to_localhost():
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if "mlflow ui --" in line]
    assert lines and all("--host 127.0.0.1" in line for line in lines), lines
