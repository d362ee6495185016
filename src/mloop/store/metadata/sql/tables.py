"""The schema, declared once with SQLAlchemy: Alembic migrations are checked against it.

Times are seconds since the epoch (float); JSON documents are TEXT. Params keep a numeric copy
(`value_num`) so filters can compare `params.lr > 0.01` as numbers on both databases.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("ended", sa.Float),
    sa.Column("parent_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("user_name", sa.String(200), nullable=False),
    sa.Column("code_commit", sa.String(64)),
    sa.Column("code_diff", sa.String(64)),
    sa.Column("code_repo", sa.Text),
    sa.Column("environment", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("heartbeat", sa.Float),
    sa.Column("deleted", sa.Float),
    sa.Column("kind", sa.String(16), nullable=False, server_default="run"),
    sa.Column("pipeline", sa.String(200)),
    sa.Index("ix_runs_started", "started"),
    sa.Index("ix_runs_parent", "parent_id"),
    sa.Index("ix_runs_status_host", "status", "host"),
    sa.Index("ix_runs_pipeline", "pipeline"),
)

run_params = sa.Table(
    "run_params",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("value_num", sa.Float),
)

run_tags = sa.Table(
    "run_tags",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Index("ix_run_tags_key_value", "key", "value"),
)

run_metrics = sa.Table(
    "run_metrics",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("key", sa.String(250), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_run_metrics_run_key_step", "run_id", "key", "step"),
)

run_latest_metrics = sa.Table(
    "run_latest_metrics",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Float),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_run_latest_metrics_key_value", "key", "value"),
)

run_inputs = sa.Table(
    "run_inputs",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("ref", sa.String(300), primary_key=True),
    sa.Column("name", sa.String(300)),
    sa.Index("ix_run_inputs_ref", "kind", "ref"),
)

run_outputs = sa.Table(
    "run_outputs",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("name", sa.String(500), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger),  # NULL: unknown (see migration 0004)
    sa.Index("ix_run_outputs_digest", "digest"),
)

environments = sa.Table(
    "environments",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("python", sa.String(64), nullable=False),
    sa.Column("packages_digest", sa.String(64), nullable=False),
    sa.Column("package_count", sa.Integer, nullable=False),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("latest", sa.Integer, nullable=False),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset", sa.String(63), sa.ForeignKey("datasets.name"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("user_name", sa.String(200), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("file_count", sa.Integer, nullable=False),
    sa.Column("total_size", sa.BigInteger, nullable=False),
    sa.Column("sources", sa.Text, nullable=False),
    sa.Column("tables", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("removed", sa.Float),
    sa.UniqueConstraint("dataset", "version", name="uq_dataset_versions_dataset_version"),
)

dataset_files = sa.Table(
    "dataset_files",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("dataset_versions.id"), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Index("ix_dataset_files_digest", "digest"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("ref", sa.String(300), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("details", sa.Text, nullable=False),
    sa.Index("ix_events_ref", "ref"),
    sa.Index("ix_events_at", "at"),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("latest", sa.Integer, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(63), sa.ForeignKey("models.name"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("user_name", sa.String(200), nullable=False),
    sa.Column("flavor", sa.String(50), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("signature", sa.Text),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("datasets", sa.Text, nullable=False),
    sa.Column("code_commit", sa.String(64)),
    sa.Column("code_diff", sa.String(64)),
    sa.Column("environment", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("trusted_types", sa.Text, nullable=False),
    sa.Column("gates", sa.Text, nullable=False),
    sa.UniqueConstraint("model", "version", name="uq_model_versions_model_version"),
    sa.Index("ix_model_versions_digest", "digest"),
)

model_files = sa.Table(
    "model_files",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Index("ix_model_files_digest", "digest"),
)

model_aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("model", sa.String(63), sa.ForeignKey("models.name"), primary_key=True),
    sa.Column("alias", sa.String(63), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

# An endpoint is created by its first deployment; each deployment is one row, changed in place
# as the rollout decides (its history is the events of `endpoint/NAME`).
endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("user_name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("current", sa.Integer, nullable=False),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("endpoint", sa.String(63), sa.ForeignKey("endpoints.name"), primary_key=True),
    sa.Column("sequence", sa.Integer, primary_key=True),
    sa.Column("strategy", sa.String(16), nullable=False),
    sa.Column("versions", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("policy", sa.Text),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("started", sa.Float),
)

# What each server process saw of each version over a few seconds; the analysis adds them up.
endpoint_stats = sa.Table(
    "endpoint_stats",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("endpoint", sa.String(63), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("reporter", sa.String(300), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("latency", sa.Text, nullable=False),
    sa.Column("labelled", sa.BigInteger, nullable=False),
    sa.Column("correct", sa.BigInteger, nullable=False),
    sa.Column("outcomes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("agreed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("dropped", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("outcome_sum", sa.Float, nullable=False, server_default="0"),
    sa.Column("outcome_squares", sa.Float, nullable=False, server_default="0"),
    sa.Index("ix_endpoint_stats_endpoint_sequence_at", "endpoint", "sequence", "at"),
)

# An A/B test's last look per deployment (an ABDecision as JSON), which the next one carries on.
endpoint_looks = sa.Table(
    "endpoint_looks",
    metadata,
    sa.Column("endpoint", sa.String(63), primary_key=True),
    sa.Column("sequence", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("look", sa.Text, nullable=False),
)

# Which process decides an endpoint's next analysis step, until `expires`.
endpoint_leases = sa.Table(
    "endpoint_leases",
    metadata,
    sa.Column("endpoint", sa.String(63), primary_key=True),
    sa.Column("holder", sa.String(300), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)

# The prediction log's index: one row per Parquet file (`digest` in the artifact store) holding
# the rows one server buffered for an endpoint, model version and role between first_at and
# last_at. A window query reads the rows overlapping it; retention removes the oldest.
prediction_batches = sa.Table(
    "prediction_batches",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("endpoint", sa.String(63), nullable=False),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("first_at", sa.Float, nullable=False),
    sa.Column("last_at", sa.Float, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Index("ix_prediction_batches_endpoint_last_at", "endpoint", "last_at"),
    sa.Index("ix_prediction_batches_last_at", "last_at"),
)

# Labels for answered requests (`POST /feedback`, `mloop feedback`), joined to the prediction log
# on (request_id, row); `label` is JSON text, so a class (text, a whole number, true/false) and
# a number both fit. `at` is when the label arrived, not when the request was answered.
feedback_labels = sa.Table(
    "feedback_labels",
    metadata,
    sa.Column("endpoint", sa.String(63), primary_key=True),
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Index("ix_feedback_labels_endpoint_at", "endpoint", "at"),
)

# Files under a `new_data` trigger's path as its last check saw them (`domain.landing`), kept per
# trigger (`triggers.train[0].new_data`) so that a controller restarted, or another one taking
# over the lease, re-reads only files that changed. `stamp` is the mtime (ns) or the ETag;
# `digest` is "" for a file still being written. Not artifact objects: nothing for gc here.
watched_files = sa.Table(
    "watched_files",
    metadata,
    sa.Column("trigger_key", sa.String(255), primary_key=True),
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("stamp", sa.Text, nullable=False),
    sa.Column("modified", sa.Float, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("first_seen", sa.Float, nullable=False),
)

# The controller's loop (domain/controller.py): one row per iteration; `open_pipeline` holds the
# pipeline's name while the iteration is open (unique: one at a time per pipeline), NULL after.
controller_iterations = sa.Table(
    "controller_iterations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pipeline", sa.String(63), nullable=False),
    sa.Column("trigger", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("numbers", sa.Text, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("dataset", sa.String(255)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("model", sa.String(255)),
    sa.Column("endpoint", sa.String(63)),
    sa.Column("deployment", sa.Integer),
    sa.Column("outcome", sa.String(32)),
    sa.Column("error", sa.Text),
    sa.Column("open_pipeline", sa.String(63), unique=True),
    sa.Index("ix_controller_iterations_trigger", "trigger", "created"),
    sa.Index("ix_controller_iterations_created", "created"),
)

# What the controller last saw of each trigger (TriggerState), by the trigger's key.
trigger_states = sa.Table(
    "trigger_states",
    metadata,
    sa.Column("trigger", sa.String(255), primary_key=True),
    sa.Column("checked", sa.Float),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("fired", sa.Float),
    sa.Column("mark", sa.Float),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("error", sa.Text),
)

# Leases by name ("controller"): one holder at a time, taken over once `expires` has passed.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("holder", sa.String(300), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)
