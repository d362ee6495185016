"""A step's fingerprint covers everything of the project it reads, and nothing else.

Each case writes a small project twice (before and after one edit), each into its own folder,
imports it fresh and digests the step: an edit of something the step reads must change the
digest; an edit of anything else must not. Both copies live in different folders, so every
case also checks that a clone elsewhere keeps its keys.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from mloop.services.pipelines.fingerprint import source_digest

_COUNTER = itertools.count()
MODULES = ("pipe", "config", "settings", "helpers", "localcfg", "conf", "conf.sub")


@pytest.fixture
def digest(tmp_path: Path) -> Callable[..., str]:
    """digest({"pipe.py": source, ...}) -> the digest of pipe.step, imported from a fresh copy."""

    def make(files: dict[str, str], step: str = "step") -> str:
        root = tmp_path / f"copy{next(_COUNTER)}"
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        for name in MODULES:
            sys.modules.pop(name, None)
        sys.path.insert(0, str(root))
        try:
            module = importlib.import_module("pipe")
            return source_digest(getattr(module, step), root)
        finally:
            sys.path.remove(str(root))
            for name in MODULES:
                sys.modules.pop(name, None)

    return make


def _edit(files: dict[str, str], rel: str, old: str, new: str) -> dict[str, str]:
    assert old in files[rel], f"{old!r} is not in {rel}"
    return {**files, rel: files[rel].replace(old, new)}


PIPE = """
import abc
import dataclasses
import enum
from pathlib import Path

import numpy as np

import settings
from config import FEATURES
from helpers import clean, scale, tail_level

NUMERIC = ["tenure", "charges"]
WEIGHTS = {"a": 1.0, "b": 2.0}
TAGS = {"alpha", "beta", "gamma"}
NESTED = ((1, 2), [3.5, None], frozenset({"x", "y"}))
UNUSED = 1
ROOT = Path(__file__).parent / "docs" / "card.md"
BOUNDS = np.array([0.0, 1.0])
DEFAULT_COLUMNS = ["c"]
LIMIT = 5


class Kind(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


MODE = Kind.FAST


@dataclasses.dataclass(frozen=True)
class Config:
    depth: int
    columns: tuple


CONFIG = Config(depth=3, columns=("a", "b"))
BASE = ["x"]


class Columns:
    ALL = BASE + ["y"]

    def pick(self):
        return self.ALL


def make_scaler(factor):
    def scaled(x):
        return x * factor

    return scaled


scaler = make_scaler(2.0)


class Base(abc.ABC):
    @abc.abstractmethod
    def run(self): ...


class Impl(Base):
    def run(self):
        return 1


def step(frame, cols=DEFAULT_COLUMNS, *, limit=LIMIT * 2):
    used = [NUMERIC, WEIGHTS, TAGS, NESTED, ROOT, BOUNDS, MODE, CONFIG, FEATURES]
    from localcfg import LIMITS  # imported inside the step only
    import conf.sub

    found = [Impl().run(), Kind.SLOW, tail_level(), LIMITS, conf.sub.RATE]
    return clean(frame), scale(frame), settings.LEVEL, Columns().pick(), scaler(1), used, found


def other(frame):
    return frame
"""

CONFIG_PY = """
FEATURES = ["a", "b"]
OTHER = "not read"
"""

SETTINGS_PY = """
LEVEL = 3
DEPTH = 2
UNREAD = 4
"""

HELPERS_PY = """
import functools

import settings

THRESHOLD = 0.5
TIMES = 2


def repeat(times):
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args):
            return [fn(*args) for _ in range(times)]

        return wrapper

    return decorate


def clean(frame):
    return frame > THRESHOLD


@repeat(times=TIMES)
def scale(frame):
    return frame


def tail_level():
    return settings.DEPTH


def unused_helper():
    return 1
"""

PROJECT = {
    "pipe.py": PIPE,
    "localcfg.py": "LIMITS = (1, 2)\nOTHER = 0\n",
    "conf/__init__.py": "",
    "conf/sub.py": "RATE = 0.1\n",
    "config.py": CONFIG_PY,
    "settings.py": SETTINGS_PY,
    "helpers.py": HELPERS_PY,
}

READ = [
    ("module-list", "pipe.py", '["tenure", "charges"]', '["tenure"]'),
    ("dict-value", "pipe.py", '"b": 2.0', '"b": 3.0'),
    ("set-member", "pipe.py", '"gamma"}', '"delta"}'),
    ("nested-containers", "pipe.py", "[3.5, None]", "[3.5, 0]"),
    ("path-in-project", "pipe.py", '"card.md"', '"card2.md"'),
    ("numpy-array", "pipe.py", "[0.0, 1.0]", "[0.0, 2.0]"),
    ("enum-member", "pipe.py", "MODE = Kind.FAST", "MODE = Kind.SLOW"),
    ("frozen-dataclass", "pipe.py", "depth=3", "depth=4"),
    ("class-attribute-computed", "pipe.py", 'BASE = ["x"]', 'BASE = ["x", "z"]'),
    ("default-argument", "pipe.py", 'DEFAULT_COLUMNS = ["c"]', 'DEFAULT_COLUMNS = ["d"]'),
    ("keyword-default", "pipe.py", "LIMIT = 5", "LIMIT = 6"),
    ("closure-cell", "pipe.py", "make_scaler(2.0)", "make_scaler(3.0)"),
    ("from-import-constant", "config.py", '["a", "b"]', '["a", "c"]'),
    ("module-attribute", "settings.py", "LEVEL = 3", "LEVEL = 5"),
    ("module-attribute-of-a-helper", "settings.py", "DEPTH = 2", "DEPTH = 3"),
    ("constant-of-a-called-helper", "helpers.py", "THRESHOLD = 0.5", "THRESHOLD = 0.7"),
    ("decorator-closure", "helpers.py", "TIMES = 2", "TIMES = 3"),
    ("method-of-a-subclass", "pipe.py", "return 1\n", "return 2\n"),
    ("import-inside-the-step", "localcfg.py", "(1, 2)", "(1, 3)"),
    ("submodule-imported-inside", "conf/sub.py", "0.1", "0.2"),
]

NOT_READ = [
    ("unused-constant", "pipe.py", "UNUSED = 1", "UNUSED = 2"),
    ("other-function", "pipe.py", "return frame\n", "return frame * 2\n"),
    ("unread-constant-of-an-imported-module", "config.py", '"not read"', '"changed"'),
    ("unread-module-attribute", "settings.py", "UNREAD = 4", "UNREAD = 5"),
    ("unused-helper", "helpers.py", "return 1", "return 2"),
    ("unread-constant-of-a-module-imported-inside", "localcfg.py", "OTHER = 0", "OTHER = 1"),
]


@pytest.mark.parametrize(("kind", "rel", "old", "new"), READ, ids=[c[0] for c in READ])
def test_an_edit_of_what_the_step_reads_changes_its_digest(
    digest, kind: str, rel: str, old: str, new: str
) -> None:
    assert digest(PROJECT) != digest(_edit(PROJECT, rel, old, new))


@pytest.mark.parametrize(("kind", "rel", "old", "new"), NOT_READ, ids=[c[0] for c in NOT_READ])
def test_an_edit_of_anything_else_keeps_it(digest, kind: str, rel: str, old: str, new: str) -> None:
    assert digest(PROJECT) == digest(_edit(PROJECT, rel, old, new))


def test_an_unreadable_object_falls_back_to_the_files_that_bind_it(digest) -> None:
    """A random generator cannot be digested by value: the file that builds it stands in, so
    any edit of that file re-runs the steps reading it (the price of being safe)."""
    files = {
        "pipe.py": "import random\n\nRNG = random.Random(0)\n\n\ndef step():\n    return RNG\n"
    }
    assert digest(files) == digest(files)
    assert digest(files) != digest(_edit(files, "pipe.py", "Random(0)", "Random(1)"))
    assert digest(files) != digest(_edit(files, "pipe.py", "import random\n", "import random\n#\n"))


def test_the_digest_is_the_same_in_every_interpreter(digest, tmp_path: Path) -> None:
    """No id(), hash() or set order: two processes with different hash seeds agree."""
    root = tmp_path / "stable"
    for rel, text in PROJECT.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    probe = (
        "import sys, json, pathlib\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "import pipe\n"
        "from mloop.services.pipelines.fingerprint import source_digest\n"
        f"print(json.dumps(source_digest(pipe.step, pathlib.Path({str(root)!r}))))\n"
    )
    seen = set()
    for seed in ("0", "1", "12345"):
        done = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        seen.add(json.loads(done.stdout))
    assert len(seen) == 1
    assert seen == {digest(PROJECT)}  # and a copy elsewhere, imported here, agrees
