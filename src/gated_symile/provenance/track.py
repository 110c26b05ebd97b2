"""MLflow tracking: store initialisation, parent runs, per-training-run logging, final metrics.

Why the split into ``init_store`` / ``create_parent_run`` / ``TrainingRun`` (docs/ecosystem.md §9):
parallel jobs against a fresh SQLite store race on its schema migrations, so one workflow rule
creates the database and the experiment (with an absolute ``artifact_location``) before any
training job starts; another creates one parent run per (dataset, method, setting) whose id the
seed jobs attach to. Every run carries provenance tags (git commit and dirty flag of the package
checkout, config and data sha256, Snakemake rule, SLURM job, pipeline version).

``mlflow`` is imported inside functions: it costs seconds and training without tracking must not
pay for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gated_symile import __version__
from gated_symile.errors import ConfigError, GatedSymileError
from gated_symile.intermediates import read_run_id
from gated_symile.provenance.manifests import git_state
from gated_symile.outputs import write_text
from gated_symile.provenance.hashing import Hasher, is_listing, is_manifest

_PARAM_VALUE_MAX = 6000  # MLflow's limit on a param value
_TAG_VALUE_MAX = 8000
_DIGEST_MAX = 36  # MLflow dataset digest field
_BATCH = 100  # params/tags per log_batch call
_DATASET_RACE_ATTEMPTS = 5  # see _is_unique_violation


def resolve_tracking_uri(uri: str, base: str | Path | None = None) -> str:
    """Absolute tracking URI: relative ``sqlite:///rel/path.db`` (or a bare path) becomes absolute.

    Snakemake may change the working directory, so a relative store would land in the wrong place.
    Other schemes (``http://``, ``sqlite:////abs``) are returned unchanged.
    """
    base_dir = Path(base) if base is not None else Path.cwd()
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
    elif "://" not in uri:
        path = uri
    else:
        return uri
    if not path or path == ":memory:":
        raise ConfigError(f"tracking.uri: {uri!r} names no database file")
    db = Path(path)
    if not db.is_absolute():
        db = (base_dir / db).resolve()
    return f"sqlite:///{db}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of an absolute sqlite URI, else None."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_sqlite_store(db: Path) -> None:
    """The store's folder exists and the file, if there, is an SQLite database (not a half copy,
    not a folder): otherwise MLflow fails with a page of SQLAlchemy errors."""
    from gated_symile.outputs import output_folder

    output_folder(db.parent)
    if db.exists():
        if not db.is_file():
            raise ConfigError(f"{db}: tracking database path is not a file")
        with db.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
        if head and head != _SQLITE_MAGIC:
            raise ConfigError(f"{db}: tracking database is not an SQLite file")


def existing_run(client: Any, run_id: str, source: str | Path) -> None:
    """Raise naming ``source`` (where the id came from) when the store has no run ``run_id``."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise GatedSymileError(f"{source}: run {run_id} is not in the tracking store") from None


def init_store(uri: str, experiment: str) -> str:
    """Create the database (and its folder) and the experiment; idempotent. Returns the experiment id.

    Artifacts go to ``<db folder>/artifacts`` (absolute), so they sit beside the database. Parent
    and training runs call it too, so a store the workflow did not initialise is created on use.
    """
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(uri)
    db = sqlite_path(uri)
    artifact_location = None
    if db is not None:
        _check_sqlite_store(db)
        artifact_location = str(db.parent / "artifacts")
        if not db.exists():
            _create_sqlite_store(db, experiment, artifact_location)
    with _store_writes(db or uri):
        return _experiment_id(MlflowClient(tracking_uri=uri), experiment, artifact_location)


def _experiment_id(client: Any, experiment: str, artifact_location: str | None) -> str:
    """The id of ``experiment``, created when absent (by this process or a concurrent one)."""
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(experiment, artifact_location=artifact_location)
    except Exception as exc:  # noqa: BLE001 - re-raised unless another process created it first
        found = client.get_experiment_by_name(experiment) if _is_unique_violation(exc) else None
        if found is None:
            raise
        return found.experiment_id


def _create_sqlite_store(db: Path, experiment: str, artifact_location: str) -> None:
    """Build a new database with its experiment under a temporary name beside ``db`` and link it
    into place whole.

    Why: MLflow creates the tables and then migrates them; a full disk or a killed job in between
    would leave a half-initialised database under the final name, which every later run refuses
    as out of date.  A hard link, unlike a rename, fails when a concurrent job put its store there
    first; that store is then used and this one dropped, so no job's runs are ever replaced.
    """
    from mlflow import MlflowClient

    temporary = str(db.parent / f".{db.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with _store_writes(db):
            client = MlflowClient(tracking_uri=f"sqlite:///{temporary}")
            _experiment_id(client, experiment, artifact_location)
            try:
                os.link(temporary, db)
            except FileExistsError:
                pass
    finally:
        for leftover in (temporary, temporary + "-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)


@contextmanager
def _store_writes(store: str | Path) -> Iterator[None]:
    """Turn a failed write to the tracking store (full disk, file-size limit, read-only folder)
    into one error naming the store, instead of SQLAlchemy's page of traceback; MLflow's own
    logged traceback of the same error is silenced meanwhile."""
    quiet = logging.getLogger("mlflow.store.db.utils")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    except Exception as exc:
        reason = _write_failure(exc)
        if reason is None:
            raise
        raise GatedSymileError(f"{store}: cannot write the tracking store ({reason})") from None
    finally:
        quiet.setLevel(level)


def _write_failure(exc: BaseException) -> str | None:
    """The file-system or database-write reason in ``exc`` or its causes, else ``None``."""
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, OSError):
            return link.strerror or str(link)
        if type(link).__name__ == "OperationalError":  # sqlite3's or SQLAlchemy's wrapper
            return str(getattr(link, "orig", None) or link).splitlines()[0]
        link = link.__cause__ or link.__context__
    return None


def create_parent_run(
    uri: str, experiment: str, name: str, tags: Mapping[str, str] | None = None
) -> str:
    """Create (and close) a parent run; the seed runs attach to it. Returns its run id."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    exp_id = init_store(uri, experiment)
    all_tags = {**provenance_tags(), **(tags or {})}
    run = client.create_run(
        exp_id, run_name=name, tags={k: _clip(v, _TAG_VALUE_MAX) for k, v in all_tags.items()}
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


# ----------------------------------------------------------------------------- provenance


def provenance_tags(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """git.commit, git.dirty, pipeline.version, snakemake.rule ($SNAKEMAKE_RULE), slurm.job_id."""
    commit, dirty = git_state()
    tags = {"git.commit": commit, "git.dirty": dirty, "pipeline.version": __version__}
    if os.environ.get("SNAKEMAKE_RULE"):
        tags["snakemake.rule"] = os.environ["SNAKEMAKE_RULE"]
    if os.environ.get("SLURM_JOB_ID"):
        tags["slurm.job_id"] = os.environ["SLURM_JOB_ID"]
    tags.update(extra or {})
    return tags


def dataset_fingerprint(tensor_dir: str | Path) -> tuple[str, list[str]]:
    """(sha256, files) of a tensor dataset: metadata.json bytes plus every file's path and size.

    Cheap on multi-GB datasets (no array bytes read); metadata.json already carries the sha256 of
    the upstream inputs, and any rewrite of an array changes its entry unless the size is equal, a
    case the upstream hashes in metadata.json cover.
    """
    root = Path(tensor_dir)
    meta = root / "metadata.json"
    if not meta.is_file():
        raise GatedSymileError(f"{meta}: tensor dataset metadata not found")
    digest = hashlib.sha256(meta.read_bytes())
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not (is_manifest(p) or is_listing(p))
    )
    for rel in files:
        digest.update(f"\n{rel}\t{(root / rel).stat().st_size}".encode())
    return digest.hexdigest(), files


def folder_sha256(folder: str | Path) -> str:
    """Content digest of a folder (every file's path, size and sha256; manifests left out)."""
    root = Path(folder)
    if not root.is_dir():
        raise GatedSymileError(f"{root}: folder not found")
    with Hasher() as hasher:
        return hasher.hash(root).sha256


def parse_tags(pairs: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> dict; a pair without '=' is a ConfigError."""
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


# ----------------------------------------------------------------------------- training runs


class TrainingRun:
    """One training job's MLflow run (child of a parent run when given); resumable by run id.

    The run id is written to ``<run_dir>/mlflow_run_id.txt``; a resumed job finds it there and
    continues logging into the same run, and the evaluate stage logs test metrics into it.
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_dir: Path,
        run_cfg: Any,
        tensor_dir: Path,
        *,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        misalignment_dir: Path | None = None,
    ) -> None:
        from mlflow import MlflowClient

        from gated_symile.config import config_hash, flatten_config

        self.uri = resolve_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_dir = Path(run_dir)
        id_file = self.run_dir / "mlflow_run_id.txt"
        data_sha, files = dataset_fingerprint(tensor_dir)
        if id_file.exists():
            self.run_id = read_run_id(id_file)
            existing_run(self.client, self.run_id, id_file)
            self.client.update_run(self.run_id, status="RUNNING")
            return
        exp_id = init_store(self.uri, experiment)
        all_tags = provenance_tags(
            {
                "config.sha256": config_hash(run_cfg),
                "data.sha256": data_sha,
                "data.path": str(Path(tensor_dir).resolve()),
                "data.files": ",".join(files),
                "dataset": run_cfg.dataset,
                "method": run_cfg.method,
                "objective": run_cfg.objective,
                "seed": str(run_cfg.seed),
                **(_misalignment_tags(misalignment_dir) if misalignment_dir is not None else {}),
                **(tags or {}),
            }
        )
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        name = f"{run_cfg.dataset}/{run_cfg.method}/seed{run_cfg.seed}"
        run = self.client.create_run(
            exp_id,
            run_name=name,
            tags={k: _clip(str(v), _TAG_VALUE_MAX) for k, v in all_tags.items()},
        )
        self.run_id = run.info.run_id
        write_text(id_file, self.run_id + "\n")
        self._log_params(flatten_config(run_cfg.to_dict()))
        self._log_dataset(tensor_dir, run_cfg.dataset, data_sha)

    def _log_params(self, flat: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [
            Param(k, _clip(json.dumps(v) if not isinstance(v, str) else v, _PARAM_VALUE_MAX))
            for k, v in flat.items()
        ]
        for i in range(0, len(params), _BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + _BATCH])

    def _log_dataset(self, tensor_dir: Path, name: str, data_sha: str) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        # the public entity, as MLflow's own local-folder source describes a path
        dataset = Dataset(
            name=name,
            digest=data_sha[:_DIGEST_MAX],
            source_type="local",
            source=json.dumps({"uri": str(Path(tensor_dir).resolve())}),
        )
        context = InputTag(key="mlflow.data.context", value="training")
        inputs = [DatasetInput(dataset, tags=[context])]
        for attempt in range(_DATASET_RACE_ATTEMPTS):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except Exception as exc:  # noqa: BLE001 - re-raised unless it is the insert race
                if attempt + 1 == _DATASET_RACE_ATTEMPTS or not _is_unique_violation(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Every numeric field of a history record as a metric at step = epoch."""
        log_metrics(self.client, self.run_id, record, step=int(record["epoch"]), skip=("epoch",))

    def finish(
        self,
        artifacts: Sequence[Path],
        summary: Mapping[str, Any] | None = None,
        status: str = "FINISHED",
    ) -> None:
        """Log artifacts (and the summary's numbers without a step) and close the run."""
        if summary is not None:
            log_metrics(self.client, self.run_id, summary, step=None, skip=("seed", "global_step"))
        for path in artifacts:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status=status)


def _is_unique_violation(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause) is a database unique-constraint violation.

    MLflow's SQL store looks a dataset up by (experiment, name, digest) and inserts it when absent,
    without a lock in between: two seed jobs of one dataset that log it at the same moment both
    insert, and the later one fails on the unique index (its transaction rolls back whole). On the
    next try the row exists and is linked, so the caller retries. The same holds for two processes
    creating one experiment by name. Matched on the driver's message as well, as a tracking server
    returns the error as text.
    """
    markers = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")
    link: BaseException | None = exc
    while link is not None:
        if type(link).__name__ == "IntegrityError" or any(m in str(link) for m in markers):
            return True
        link = link.__cause__
    return False


def _misalignment_tags(folder: Path) -> dict[str, str]:
    return {"misalign.path": str(Path(folder).resolve()), "misalign.sha256": folder_sha256(folder)}


def log_metrics(
    client: Any, run_id: str, values: Mapping[str, Any], step: int | None, skip: Sequence[str] = ()
) -> None:
    """Numeric (non-bool) top-level entries of ``values`` as metrics in one batch."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(v), now, step or 0)
        for key, v in values.items()
        if key not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def log_final_metrics(
    uri: str,
    run_id: str,
    metrics: Mapping[str, Any],
    artifacts: Sequence[Path] = (),
    texts: Mapping[str, str] | None = None,
    source: str | Path = "run id",
) -> None:
    """For the evaluate stage: test metrics (nested dicts flattened to dotted keys) and files.

    Non-numeric leaves are skipped; artifacts that do not exist are an error (a wiring mistake).
    ``texts`` maps artifact file names to contents (e.g. a manifest logged under another name,
    so that the artifact store never holds a second ``provenance.json`` for the audit to find).
    ``source`` names where ``run_id`` came from when the store has no such run.
    """
    from mlflow import MlflowClient

    from gated_symile.config import flatten_config

    client = MlflowClient(tracking_uri=resolve_tracking_uri(uri))
    existing_run(client, run_id, source)
    log_metrics(client, run_id, flatten_config(metrics), step=None)
    for path in artifacts:
        if not Path(path).is_file():
            raise GatedSymileError(f"{path}: artifact to log not found")
        client.log_artifact(run_id, str(path))
    for name, text in (texts or {}).items():
        client.log_text(run_id, text, name)


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."
