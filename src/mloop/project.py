"""The composition root: find the project, resolve settings, open the stores, build services.

This is the only module that knows which backends are in use. Services are built on first use,
so a command that only lists runs never imports what profiling data needs (pandas). Another
process builds its services here too: a pipeline step's worker process or Ray task calls the
picklable `StepServices` it is sent (the settings and who acts), and a child `mloop` process is
started with `Project.child_environment()`; so a store that needs a credential gets it in one
place.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.config import MAX_USER_LENGTH, PROJECT_FILE, STATE_DIR, Settings, load_settings
from mloop.errors import InvalidInput, InvalidPath, ProjectNotFound

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mloop.domain.trigger import TriggerKind
    from mloop.services.automation.ci import CIService
    from mloop.services.automation.controller import Check, Controller
    from mloop.services.automation.signals import SignalService
    from mloop.services.automation.triggers import TriggerService
    from mloop.services.data.versioning import DataService
    from mloop.services.monitoring.drift import DriftMonitor
    from mloop.services.monitoring.gauges import GaugeMonitor
    from mloop.services.monitoring.status import MonitorService
    from mloop.services.pipelines.catalog import PipelineService
    from mloop.services.pipelines.worker import Services
    from mloop.services.predictions.log import PredictionLog
    from mloop.services.predictions.reader import PredictionReader
    from mloop.services.registry.card import CardBuilder
    from mloop.services.registry.models import ModelService
    from mloop.services.registry.promotion import Promoter
    from mloop.services.registry.reproduce import Reproducer
    from mloop.services.serving.endpoints import EndpointService
    from mloop.services.serving.scorer import BatchScorer
    from mloop.services.storage.housekeeping import StorageService
    from mloop.services.tracking.lineage import LineageService
    from mloop.services.tracking.runs import RunService
    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.metadata.protocol import MetadataStore

PROJECT_TEMPLATE = """\
# mloop project settings. Any key can be overridden by an MLOOP_<KEY> environment variable;
# `mloop config show` prints every value and where it came from.
project: {name}
# store_uri: postgresql+psycopg://USER:PASSWORD@HOST:5432/DB   # default: SQLite in .mloop/
# artifacts_uri: s3://bucket/prefix                           # default: .mloop/objects
# remote_uri: s3://bucket/prefix                              # for mloop data push / pull
"""


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` holding mloop.yaml, as git finds `.git`."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise ProjectNotFound(
        f"no {PROJECT_FILE} in {here} or any folder above it",
        "run `mloop init` to make this folder a project, or cd into one",
    )


def init_project(folder: Path, name: str | None = None) -> tuple[Path, bool]:
    """Create mloop.yaml and .mloop/ in `folder`; return (root, created). Safe to repeat."""
    root = folder.resolve()
    if root.exists() and not root.is_dir():
        raise InvalidPath(f"{root} is a file, not a folder", "give a folder to make a project in")
    root.mkdir(parents=True, exist_ok=True)
    project_file = root / PROJECT_FILE
    created = not project_file.exists()
    if created:
        from mloop.domain.names import check_name, suggest_name

        project_name = check_name(name or suggest_name(root.name) or "project", "project name")
        tmp = project_file.with_suffix(".yaml.tmp")
        tmp.write_text(PROJECT_TEMPLATE.format(name=project_name), encoding="utf-8")
        os.replace(tmp, project_file)
    state = root / STATE_DIR
    state.mkdir(exist_ok=True)
    (state / ".gitignore").write_text("*\n", encoding="utf-8")
    return root, created


class Project:
    """One project's settings, stores and services.

    `actor` names who acts when it is not this process's user (a worker acting for the run
    that sent it its step).
    """

    def __init__(self, settings: Settings, *, actor: str | None = None) -> None:
        self.settings = settings
        self.root = settings.root
        if actor is not None:
            self.__dict__["actor"] = actor  # the cached_property's slot

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Project:
        """Open the project containing `path` (default: the current folder).

        Example:
            >>> project = Project.open()  # doctest: +SKIP
            >>> project.runs.find(limit=5)  # doctest: +SKIP
        """
        root = find_root(Path(path) if path is not None else None)
        return cls(load_settings(root))

    @cached_property
    def actor(self) -> str:
        if self.settings.user:
            return self.settings.user
        from mloop.domain.names import check_line

        try:  # getpass reads $LOGNAME and $USER first, which may hold anything
            return check_line(getpass.getuser(), "user", MAX_USER_LENGTH)
        except (KeyError, OSError, InvalidInput):
            return f"uid-{os.getuid()}"

    @cached_property
    def metadata(self) -> MetadataStore:
        from mloop.store import open_metadata_store

        return open_metadata_store(self.settings.store_uri, pool_size=self.settings.pool_size)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        from mloop.store import open_artifact_store

        return open_artifact_store(self.settings.artifacts_uri)

    def remote(self, uri: str | None = None) -> ArtifactStore:
        """The remote artifact store for push and pull (`uri`, else the `remote_uri` setting)."""
        from mloop.errors import ConfigError
        from mloop.store import open_artifact_store

        target = uri or self.settings.remote_uri
        if not target:
            raise ConfigError(
                "no remote artifact store is configured",
                "set remote_uri in mloop.yaml (e.g. s3://bucket/prefix) or pass --remote URI",
            )
        return open_artifact_store(target)

    @cached_property
    def runs(self) -> RunService:
        from mloop.services.tracking.runs import RunService

        # The artifact store opens when a run first stores a file, not with every run.
        return RunService(self.metadata, lambda: self.artifacts, self.actor, self.root)

    @cached_property
    def lineage(self) -> LineageService:
        from mloop.services.tracking.lineage import LineageService

        return LineageService(self.metadata)

    @cached_property
    def data(self) -> DataService:
        from mloop.services.data.versioning import DataService
        from mloop.store.statcache import StatCache
        from mloop.store.walk import store_locations

        return DataService(
            self.metadata,
            lambda: self.artifacts,
            root=self.root,
            actor=self.actor,
            stat_cache=StatCache(self.settings.state_dir / "state.db"),
            checkout_cache=self.settings.state_dir / "checkouts",
            stores=store_locations(self.settings.store_uri, self.settings.artifacts_uri),
        )

    def step_services(self) -> Services:
        """What a pipeline step uses: this project's tracker, data service and artifact store."""
        from mloop.services.pipelines.worker import Services

        return Services(self.runs, self.data, self.artifacts)

    def child_environment(self) -> dict[str, str]:
        """Variables that make a child `mloop` process, opened on another folder (a checkout of
        an older commit), use this project's stores and record its work as this actor."""
        return {
            "MLOOP_STORE_URI": self.settings.store_uri,
            "MLOOP_ARTIFACTS_URI": self.settings.artifacts_uri,
            "MLOOP_USER": self.actor,
        }

    @cached_property
    def pipelines(self) -> PipelineService:
        from mloop.services.pipelines.catalog import PipelineService
        from mloop.services.pipelines.runner import PipelineRunner

        opener = StepServices(self.settings, self.actor)
        runner = PipelineRunner(self.step_services(), self.root, opener)
        return PipelineService(
            runner,
            self.settings.pipelines,
            self.root,
            default_executor=self.settings.executor,
            max_workers=self.settings.max_workers,
            ray_address=self.settings.ray_address,
        )

    @cached_property
    def ci(self) -> CIService:
        from mloop.services.automation.ci import CIService

        return CIService(
            self.data,
            self.pipelines,
            self.root,
            self.settings.gates,
            report=self.settings.state_dir / "ci-report.md",
        )

    @cached_property
    def triggers(self) -> TriggerService:
        from mloop.services.automation.triggers import TriggerService

        return TriggerService(
            self.metadata,
            self.data,
            root=self.root,
            actor=self.actor,
            triggers=self.settings.triggers,
            pipelines=list(self.settings.pipelines),
            signals=self.signals.checks(),
        )

    @cached_property
    def signals(self) -> SignalService:
        """Drift, accuracy and alertmanager checks, and the alerts Alertmanager posts."""
        from mloop.services.automation.signals import SignalService

        return SignalService(
            self.metadata, self.monitoring, actor=self.actor, triggers=self.settings.triggers
        )

    def controller(
        self, checks: Mapping[TriggerKind, Check] | None = None, holder: str | None = None
    ) -> Controller:
        """The controller of this project's triggers (`mloop controller`); `checks` add the
        checks of trigger kinds it does not make itself (drift, accuracy, alertmanager)."""
        from mloop.domain.controller import check_loop_pipelines
        from mloop.domain.trigger import check_pipelines
        from mloop.services.automation.controller import Controller
        from mloop.services.automation.feedback_snapshot import FeedbackSnapshots
        from mloop.services.automation.iteration import Steps

        check_pipelines(self.settings.triggers, list(self.settings.pipelines))
        check_loop_pipelines(self.settings.controller, list(self.settings.pipelines))
        steps = Steps(
            self.metadata,
            self.triggers,
            self.pipelines,
            self.promoter,
            self.endpoints,
            policies=self.settings.controller,
            actor=self.actor,
            feedback=FeedbackSnapshots(self.metadata, self.data, actor=self.actor),
        )
        if checks is None:  # drift, accuracy and alertmanager: the signals' checks
            checks = self.signals.checks()
        return Controller(
            self.metadata, self.triggers, steps, actor=self.actor, checks=checks, holder=holder
        )

    @cached_property
    def models(self) -> ModelService:
        from mloop.services.registry.models import ModelService

        return ModelService(self.metadata, self.artifacts, self.runs, self.actor)

    @cached_property
    def promoter(self) -> Promoter:
        from mloop.services.registry.promotion import Promoter

        return Promoter(self.models, self.data, self.settings.models)

    @cached_property
    def card_builder(self) -> CardBuilder:
        from mloop.services.registry.card import CardBuilder

        return CardBuilder(self.models, self.root)

    @cached_property
    def reproducer(self) -> Reproducer:
        from mloop.services.registry.reproduce import Reproducer

        return Reproducer(self.models, self.root, self.child_environment(), lambda: self.pipelines)

    @cached_property
    def endpoints(self) -> EndpointService:
        from mloop.services.serving.endpoints import EndpointService

        def labelled(*interval: Any) -> Any:
            # serving and monitoring are siblings: the rollout gets accuracy from feedback as
            # a function (labels joined to the prediction log), imported when first called
            from mloop.services.monitoring.accuracy import labelled_stats

            return labelled_stats(self.metadata, self.artifacts, *interval)

        return EndpointService(self.metadata, self.models, self.actor, labelled)

    @cached_property
    def scorer(self) -> BatchScorer:
        from mloop.services.serving.scorer import BatchScorer

        return BatchScorer(self.models)

    @cached_property
    def drift(self) -> DriftMonitor:
        """Drift of an endpoint's logged requests from its reference (`monitor status`)."""
        from mloop.services.monitoring.drift import DriftMonitor

        return DriftMonitor(
            self.models,
            self.data,
            self.predictions,
            self.settings.state_dir / "monitoring",
            reference=self.settings.monitoring_reference,
            thresholds=self.settings.drift_thresholds,
        )

    @cached_property
    def storage(self) -> StorageService:
        from mloop.services.storage.housekeeping import StorageService

        return StorageService(
            self.metadata,
            self.artifacts,
            actor=self.actor,
            prediction_retention=self.settings.predictions_retention,
        )

    @cached_property
    def predictions(self) -> PredictionReader:
        from mloop.services.predictions.reader import PredictionReader

        return PredictionReader(self.metadata, self.artifacts)

    @cached_property
    def monitoring(self) -> MonitorService:
        from mloop.services.monitoring.status import MonitorService

        settings = self.settings
        return MonitorService(
            self.metadata, self.predictions, settings.bias_columns, settings.models, self.drift
        )

    @cached_property
    def gauges(self) -> GaugeMonitor:
        """What a model server's monitor computes for /metrics every `monitoring_interval`."""
        from mloop.services.monitoring.gauges import GaugeMonitor

        settings = self.settings
        return GaugeMonitor(
            self.monitoring, settings.monitoring_window, settings.monitoring_max_requests
        )

    def prediction_log(self, **tuning: Any) -> PredictionLog:
        """A writer of the prediction log for one server process (its sampling rate from the
        settings; `tuning`: flush_seconds, flush_requests, max_requests, and `closes`, called
        when it has closed). Files it could not store when it closed wait in
        `.mloop/predictions/` for the next one to upload."""
        from mloop.services.predictions.log import PredictionLog

        return PredictionLog(
            self.metadata,
            self.artifacts,
            sample_rate=self.settings.predictions_sample_rate,
            scores=self.settings.predictions_scores,
            spool=self.settings.state_dir / "predictions",
            **tuning,
        )

    def close(self) -> None:
        if "metadata" in self.__dict__:
            self.metadata.close()


@dataclass(frozen=True)
class StepServices:
    """How a worker process or Ray task gets its services: the project's settings and who acts,
    picklable, called in the worker to open the same stores through `Project` (the runner is
    handed this, as Kedro's runner is handed its catalog; it never opens stores itself)."""

    settings: Settings
    actor: str

    def __call__(self) -> Services:
        return Project(self.settings, actor=self.actor).step_services()
