"""Opening a store made by an older mloop upgrades it in place, its rows kept: a store at schema
revision 0003, with runs, pipeline steps, datasets and models in it, on every implementation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from mloop.domain.query import parse_filter
from mloop.domain.run import Liveness, RunKind, RunOutput, RunStatus
from mloop.store import open_metadata_store
from mloop.store.metadata.protocol import MetadataStore
from mloop.store.metadata.sql import migrate, tables
from tests.contract.records import T0, digest

STEP, SCRIPT, KILLED, PIPE = "5" * 32, "6" * 32, "7" * 32, "8" * 32
PAYLOAD = 8926  # what 0003-era pipelines recorded for a value whose manifest is far smaller


def _engine(uri: str) -> Any:
    return sqlalchemy.create_engine(uri, poolclass=sqlalchemy.NullPool)


def _at_revision(uri: str, revision: str) -> None:
    engine = _engine(uri)
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(migrate.MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def _insert(conn: Any, table: str, **row: object) -> None:
    names = ", ".join(row)
    values = ", ".join(f":{k}" for k in row)
    conn.execute(sqlalchemy.text(f"INSERT INTO {table} ({names}) VALUES ({values})"), row)


def _old_rows(uri: str) -> None:
    """Rows as mloop wrote them at revision 0003 (no pid, heartbeat or removal columns)."""
    engine = _engine(uri)
    run = {"user_name": "ada", "code_commit": None, "environment": "e" * 64}
    try:
        with engine.begin() as conn:
            _insert(conn, "runs", id=PIPE, name="churn", status="finished", started=T0,
                    ended=T0 + 5, **run)  # fmt: skip
            _insert(conn, "runs", id=STEP, name="train", status="finished", started=T0,
                    ended=T0 + 5, parent_id=PIPE, **run)  # fmt: skip
            _insert(conn, "runs", id=SCRIPT, name="script", status="finished", started=T0,
                    ended=T0 + 5, **run)  # fmt: skip
            _insert(conn, "runs", id=KILLED, name="killed", status="running", started=T0, **run)
            _insert(conn, "run_tags", run_id=STEP, key="mloop.kind", value="step")
            _insert(conn, "run_tags", run_id=STEP, key="mloop.step", value="train")
            for key, value in (
                ("mloop.kind", "pipeline"),
                ("mloop.pipeline", "churn"),
                ("mloop.target", "pipelines:churn"),
            ):
                _insert(conn, "run_tags", run_id=PIPE, key=key, value=value)
            _insert(conn, "run_params", run_id=STEP, key="depth", value="3", value_num=3.0)
            _insert(conn, "run_latest_metrics", run_id=STEP, key="acc", value=0.9, step=0, ts=T0)
            for run_id, name, size in (
                (STEP, "outputs/0", PAYLOAD),
                (STEP, "outputs/0.files/data.parquet", PAYLOAD),
                (STEP, "outputs/12", 40),
                (SCRIPT, "outputs/0", 7),  # a script's own artifact of that name: a real size
            ):
                _insert(
                    conn, "run_outputs", run_id=run_id, name=name, digest=digest(name), size=size
                )
            _insert(conn, "datasets", name="sales", created=T0, latest=1)
            _insert(conn, "dataset_versions", dataset="sales", version=1, created=T0,
                    user_name="ada", message="", file_count=1, total_size=3, sources="[]",
                    tables="[]", run_id=None)  # fmt: skip
            version_id = conn.execute(sqlalchemy.text("SELECT id FROM dataset_versions")).scalar()
            _insert(conn, "dataset_files", version_id=version_id, path="a.csv",
                    digest=digest("a.csv"), size=3)  # fmt: skip
            _insert(conn, "events", at=T0, actor="ada", action="run.started", ref=f"run/{STEP}",
                    reason=None, details="{}")  # fmt: skip
    finally:
        engine.dispose()


@pytest.fixture
def upgraded(metadata_uri: str) -> Iterator[MetadataStore]:
    _at_revision(metadata_uri, "0003")
    _old_rows(metadata_uri)
    store = open_metadata_store(metadata_uri)
    yield store
    store.close()


def test_the_upgrade_keeps_every_row(upgraded: MetadataStore) -> None:
    step = upgraded.runs.get(STEP)

    assert (step.name, step.status, step.params, step.metrics["acc"].value) == (
        "train",
        RunStatus.FINISHED,
        {"depth": "3"},
        0.9,
    )
    assert (step.pid, step.host, step.heartbeat, step.deleted) == (None, None, None, None)
    assert upgraded.datasets.get_version("sales", 1, files=True).files[0].size == 3
    assert [e.ref for e in upgraded.events.find()] == [f"run/{STEP}"]
    assert upgraded.runs.count() == 4


def test_the_upgrade_moves_the_kind_and_pipeline_tags_into_fields(
    upgraded: MetadataStore,
) -> None:
    pipe, step, script = (upgraded.runs.get(i) for i in (PIPE, STEP, SCRIPT))

    assert (pipe.kind, pipe.pipeline, pipe.tags) == (
        RunKind.PIPELINE,
        "churn",
        {"mloop.target": "pipelines:churn"},
    )
    # a step had no pipeline tag: it takes its parent's
    assert (step.kind, step.pipeline, step.tags) == (RunKind.STEP, "churn", {"mloop.step": "train"})
    assert (script.kind, script.pipeline) == (RunKind.RUN, None)
    # filters written for the tags read the fields
    for text, found in (
        ("tags.mloop.kind = step", {STEP}),
        ("kind = pipeline", {PIPE}),
        ("tags.mloop.pipeline = churn", {PIPE, STEP}),
        ("kind = run", {SCRIPT, KILLED}),
    ):
        assert {r.id for r in upgraded.runs.find(parse_filter(text))} == found, text


def test_the_upgrade_forgets_the_payload_size_recorded_for_step_manifests(
    upgraded: MetadataStore,
) -> None:
    assert upgraded.runs.get(STEP).outputs == (
        RunOutput("outputs/0", digest("outputs/0"), None),
        RunOutput("outputs/0.files/data.parquet", digest("outputs/0.files/data.parquet"), PAYLOAD),
        RunOutput("outputs/12", digest("outputs/12"), None),
    )
    assert upgraded.runs.get(SCRIPT).outputs == (RunOutput("outputs/0", digest("outputs/0"), 7),)
    sizes = {owner: size for _, size, owner in upgraded.housekeeping.referenced_objects()}
    assert sizes[f"run/{STEP} outputs/0"] is None
    assert sizes[f"run/{STEP} outputs/0.files/data.parquet"] == PAYLOAD


def test_a_run_left_running_by_an_old_mloop_reads_as_lost(upgraded: MetadataStore) -> None:
    rule = Liveness(stale_before=T0 + 3600)

    assert upgraded.runs.get(KILLED, rule).status is RunStatus.LOST
    assert upgraded.runs.get(STEP, rule).status is RunStatus.FINISHED


def test_the_upgraded_schema_is_the_declared_one(
    upgraded: MetadataStore, metadata_uri: str
) -> None:
    engine = _engine(metadata_uri)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, tables.metadata)
            revision = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
            assert revision.scalar() == migrate.HEAD
    finally:
        engine.dispose()
    assert differences == []
