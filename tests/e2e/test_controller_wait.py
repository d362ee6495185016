"""`mloop controller status --wait`: what a user types to see the loop's next turn through (the
README's step 15 waits for a promotion and a rollback with it), and the controller's own lines,
one per step as it takes it, in the words a reader looks for."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import MLOOP, run_mloop
from tests.e2e.test_controller_restart import _start
from tests.integration.controller_project import forget, land, write_loop_project


@pytest.fixture
def loop(make_project: Callable[..., Path]) -> Iterator[Path]:
    root = make_project("loop")
    write_loop_project(root, cooldown="0")
    yield root
    forget(root)


def _wait(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*MLOOP, "controller", "status", "--wait", "--timeout", "120"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_wait_with_nothing_coming_gives_up_at_its_timeout(loop: Path) -> None:
    done = run_mloop("controller", "status", "--wait", "--timeout", "1", cwd=loop)
    assert done.code == 1
    assert "no iteration ended within 1 s" in done.err
    assert "lease: free (no controller running)" in done.out


def test_wait_follows_the_next_iteration_to_its_end(loop: Path) -> None:
    # The wait starts before anything landed: it must not take the status as it is, but wait
    # for the iteration the landed rows start, and say how that one ended.
    waiting = _wait(loop)
    controller = _start(loop)
    try:
        land(loop, "a.csv", 6)
        out, err = waiting.communicate(timeout=150)
    finally:
        controller.send_signal(signal.SIGTERM)
        said, _ = controller.communicate(timeout=60)
    assert waiting.returncode == 0, out + err
    assert "passed" in out.split("latest iterations", 1)[1]
    # every step on a line of its own, in order, in the words of the loop
    words = [
        "triggered by triggers.train[0].new_data",
        "snapshotted: the landed rows are a dataset version",
        "training: retraining",
        "registered: retrained, the challenger is registered",
        "gated: the challenger passed the registry's gates",
        "done, passed: no endpoint to roll out on: the challenger is promoted",
    ]
    lines = [line for line in said.splitlines() if " iteration " in line]
    assert len(lines) == len(words), said
    for line, word in zip(lines, words, strict=True):
        assert word in line, said


def test_a_long_lived_controller_retrains_on_the_code_as_it_is_now(loop: Path) -> None:
    # The tour's step 15 edits pipeline.py while the controller runs: its next retrain must
    # run the edited code, not the module it imported for the first one.
    controller = _start(loop)
    try:
        for name, start in (("a.csv", 10), ("b.csv", 30)):
            # the wait is under way first: this project's rows settle at once and train in a
            # blink, so an iteration could end before a wait started after the landing began
            waiting = _wait(loop)
            assert waiting.stdout is not None and "waiting for" in waiting.stdout.readline()
            land(loop, name, 6, start=start)
            out, err = waiting.communicate(timeout=150)
            assert waiting.returncode == 0, out + err
            pipeline = loop / "pipeline.py"
            pipeline.write_text(pipeline.read_text().replace('"trained.txt"', '"edited.txt"'))
    finally:
        controller.send_signal(signal.SIGTERM)
        controller.communicate(timeout=60)
    assert (loop / "trained.txt").read_text().split() == ["9"]  # the first: 3 + 6 rows
    assert (loop / "edited.txt").read_text().split() == ["15"]  # the second, by the new code
