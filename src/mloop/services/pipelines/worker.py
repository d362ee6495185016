"""Running one step: load its inputs, call it (with retries and a timeout), store its outputs.

The same code runs in the pipeline's own process (local executor) and in worker processes or
Ray tasks: a StepTask is plain data (digests, values), so it can be sent anywhere that can reach
the stores. A worker does not open the stores itself: the runner sends, with each task, the
picklable `OpenServices` the wiring layer handed it (`mloop.project.StepServices`), so stores
are opened, and credentials travel, in one place. Outputs go to the artifact store, not back
through the driver.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.domain.pipeline import StepOptions, parse_target
from mloop.domain.run import RunOutput
from mloop.errors import MloopError, NeedsTrust, PipelineError
from mloop.services.data.versioning import DataService
from mloop.services.tracking import active
from mloop.services.tracking.runs import RunService
from mloop.store.artifacts.cas import ArtifactStore


@dataclass(frozen=True, slots=True)
class StepTask:
    """What one step is and reads, as plain picklable data (where its services come from is
    the `OpenServices` sent beside it)."""

    root: str  # the project folder the step's modules are imported from
    run_id: str
    step: str
    target: str
    inputs: tuple[tuple[str, str, Any], ...]  # (argument, kind, value | digest | [name, version])
    options: StepOptions


@dataclass(frozen=True, slots=True)
class StepOutcome:
    ok: bool
    outputs: tuple[str, ...]  # value digests, one per output
    error: str | None
    attempts: int
    seconds: float


@dataclass
class Services:
    """The stores and services a worker uses; the local executor hands over its own."""

    runs: RunService
    data: DataService
    artifacts: ArtifactStore


# Builds a worker's services: a picklable callable from the wiring layer (services never open
# stores from URIs), called once per task in the worker process or Ray task.
OpenServices = Callable[[], Services]


class StepTimeout(Exception):
    pass


# The project root whose modules this process imported last (a process holds one project's
# modules at a time: two projects may both have a `pipeline.py`, which Python names alike).
_PROJECT_ROOT: list[str] = []


def _import_from(root: str) -> None:
    """Make `root` the first place imports look, dropping the modules another project's root
    gave this process (a notebook or a server opening two projects, or tests doing so) so
    that `pipeline` and the modules it imports are this project's own."""
    root = os.path.realpath(root)
    previous = _PROJECT_ROOT[0] if _PROJECT_ROOT else None
    if previous is not None and previous != root:
        forget_modules(previous)
        sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or ".") != previous]
    _PROJECT_ROOT[:] = [root]
    if not sys.path or os.path.realpath(sys.path[0] or ".") != root:
        sys.path[:] = [root, *(e for e in sys.path if os.path.realpath(e or ".") != root)]


def forget_modules(root: str) -> None:
    """Drop the modules imported from the project in `root` (not the packages of a virtual
    environment kept inside it), so the next import reads their files as they are now: a
    long-lived controller retrains on the code of today, not the code it started with."""
    inside = os.path.realpath(root) + os.sep
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or "site-packages" in file:
            continue
        if os.path.realpath(file).startswith(inside):
            del sys.modules[name]
    importlib.invalidate_caches()


def resolve(target: str, root: str | None = None) -> Any:
    """The object `module:qualname` names, importing the module (from the project root)."""
    module_name, qualname = parse_target(target)
    if module_name == "__main__" and root is not None and "__main__" not in sys.modules:
        raise PipelineError(
            f"step {qualname!r} is defined in a script, not a module",
            "move the steps into a module (e.g. pipeline.py) to run them in other processes",
        )
    if root is not None:
        _import_from(root)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f"cannot load {target!r}: {exc}", "check the module path") from None
    return obj


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise StepTimeout in the step after `seconds` (via SIGALRM, so only in a main thread)."""
    usable = seconds is not None and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise StepTimeout(f"the step ran longer than its timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_task(task: StepTask, open_services: OpenServices) -> StepOutcome:
    """Entry point in a worker process or Ray task: build this process's services through the
    wiring layer, run the step."""
    return run_step(task, open_services())


def run_step(task: StepTask, services: Services) -> StepOutcome:
    """Run one step in this process, logging to its run; never raises for the step's own
    errors (they come back in the outcome, with the traceback)."""
    from mloop.services.tracking.values import describe_value, load_value, store_value

    started = time.monotonic()
    run = services.runs.attach(task.run_id)
    attempts = 0
    try:
        fn = resolve(task.target, task.root)
        func: Callable[..., Any] = getattr(fn, "fn", fn)
        output_types: tuple[Any, ...] = getattr(fn, "output_types", (None,))
        with tempfile.TemporaryDirectory(prefix="mloop-step-") as workdir:
            run.workdir = Path(workdir) / "scratch"  # kept until the outputs are stored
            run.workdir.mkdir()
            kwargs: dict[str, Any] = {}
            for arg, kind, payload in task.inputs:
                if kind == "output":
                    try:
                        kwargs[arg] = load_value(
                            services.artifacts,
                            payload,
                            trust=task.options.trust,
                            workdir=Path(workdir) / arg,
                        )
                    except NeedsTrust as exc:  # in a step, trust is the decorator's to give
                        subject = f"the input {arg!r} of step {task.step!r}"
                        raise exc.needing(NeedsTrust.STEP, subject) from None
                    run.log_input("artifact", payload, arg)
                elif kind == "dataset":
                    dataset = services.data.open(payload[0], payload[1])
                    kwargs[arg] = dataset
                    run.log_input("dataset", dataset.version.ref, arg)
                else:
                    kwargs[arg] = payload
            result: Any = None
            while True:
                attempts += 1
                active.push(run)
                try:
                    with _time_limit(task.options.timeout):
                        result = func(**kwargs)
                    break
                except Exception:
                    if attempts > task.options.retries:
                        raise
                    run.set_tag("mloop.retried", str(attempts))
                    time.sleep(task.options.retry_delay)  # the user asked for this pause
                finally:
                    active.remove(run)
            # Stored inside the working folder's lifetime: outputs may be files written there.
            values = _as_outputs(task.step, result, len(output_types))
            digests: list[str] = []
            outputs: list[RunOutput] = []
            for index, (value, declared) in enumerate(zip(values, output_types, strict=True)):
                stored = store_value(
                    services.artifacts,
                    value,
                    declared=declared,
                    trust=task.options.trust,
                    what=f"step {task.step!r}",
                )
                digests.append(stored.digest)
                outputs.append(RunOutput(f"outputs/{index}", stored.digest, stored.manifest_size))
                manifest = describe_value(services.artifacts, stored.digest)
                for rel, (digest, size) in sorted(_files(manifest).items()):
                    # Recorded one by one so fsck checks, and gc keeps, every file of the value.
                    size = size or services.artifacts.size(digest) or 0
                    outputs.append(RunOutput(f"outputs/{index}.files/{rel}", digest, size))
        services.artifacts.sync()
        run.set_tag("mloop.attempts", str(attempts))
        run.flush()
        services.runs.metadata.runs.write_data(task.run_id, outputs=outputs)
        return StepOutcome(True, tuple(digests), None, attempts, time.monotonic() - started)
    except Exception as exc:
        with contextlib.suppress(Exception):
            run.set_tag("mloop.attempts", str(max(attempts, 1)))
            run.flush()
        detail = (
            f"{type(exc).__name__}: {exc.message}"
            # where trust is the step's to give, the hint naming the decorator is the answer
            + (f" (hint: {exc.hint})" if isinstance(exc, NeedsTrust) else "")
            if isinstance(exc, MloopError)
            else "".join(traceback.format_exception(exc))[-4000:]
        )
        return StepOutcome(False, (), detail, max(attempts, 1), time.monotonic() - started)


def _files(manifest: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """The files of a value bundle as rel -> (digest, size), from its manifest."""
    found: dict[str, tuple[str, int]] = {}
    for rel, entry in manifest.get("files", {}).items():
        if isinstance(entry, dict):
            found[rel] = (str(entry["digest"]), int(entry.get("size", 0)))
        else:
            found[rel] = (str(entry), 0)
    return found


def _as_outputs(step: str, result: Any, count: int) -> tuple[Any, ...]:
    if count == 0:
        return ()
    if count == 1:
        return (result,)
    if not isinstance(result, tuple) or len(result) != count:
        raise PipelineError(
            f"step {step!r} is declared to return {count} values but returned "
            f"{type(result).__name__}",
            "return a tuple with one item per declared output",
        )
    return result
