"""Shared helpers for the benchmarks: competitor venvs, interleaved process timing, reporting.

Stdlib only. Every benchmark is run as `.venv/bin/python bench/NAME.py`; this module sits beside
them, so `import _common` works both from `run_all.py` and when a benchmark is run alone.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"
VENVS = BENCH / ".venvs"

# The competitors, pinned to the versions of shared/research/perf-baselines.md.
MLFLOW_PIN = "mlflow==3.17.2"
DVC_PIN = "dvc==3.67.1"
BASE_PYTHON = os.environ.get("BENCH_PYTHON", "python3.11")

# No telemetry, no update checks, nothing leaves the machine.
QUIET_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    "NO_COLOR": "1",
}


def project_python() -> Path:
    """mloop's own interpreter: the project venv (what `make install` builds)."""
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def mloop_exe() -> Path:
    exe = project_python().parent / "mloop"
    if not exe.exists():
        raise SystemExit(f"{exe} not found: run `make install` first")
    return exe


def bench_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOOP_", "MLFLOW_"))}
    env.update(QUIET_ENV)
    # This machine's shell sets PYTHONDONTWRITEBYTECODE=1: mloop (an editable install, no .pyc)
    # would then recompile every module in every process, which a wheel install never does.
    # Byte-code goes to one cache folder under bench/.work for every tool alike (src/ stays
    # untouched); the warm-up run of each command fills it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    # Scratch folders live inside this repo's ignored bench/.work: stop git (mloop's and MLflow's
    # code capture) from walking up into the main working tree, which other people are editing.
    env["GIT_CEILING_DIRECTORIES"] = str(WORK)
    env.update(extra)
    return env


# --- competitor venvs ------------------------------------------------------------------------


def ensure_venv(name: str, requirements: Sequence[str], log: Callable[[str], None] = print) -> Path:
    """`bench/.venvs/NAME` with exactly `requirements` installed; idempotent (a stamp file)."""
    venv = VENVS / name
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(requirements) + "\n"
    python = venv / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    VENVS.mkdir(parents=True, exist_ok=True)
    log(f"# creating {venv} with {' '.join(requirements)} (one-off, ~30 s)")
    start = time.perf_counter()
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *requirements,
        ],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        noise = "is ignored: it is neither a file nor a directory"
        log("\n".join(ln for ln in pip.stderr.splitlines() if noise not in ln)[-4000:])
        raise SystemExit(f"pip install {' '.join(requirements)} into {venv} failed")
    stamp.write_text(wanted)
    log(f"# {name} venv ready in {time.perf_counter() - start:.0f} s")
    return venv


def mlflow_venv(log: Callable[[str], None] = print) -> Path:
    return ensure_venv("mlflow", [MLFLOW_PIN], log)


def dvc_venv(log: Callable[[str], None] = print) -> Path:
    return ensure_venv("dvc", [DVC_PIN], log)


def installed_version(venv_python: Path, dist: str) -> str:
    out = subprocess.run(
        [str(venv_python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


# --- timing ----------------------------------------------------------------------------------


@dataclass
class Proc:
    """One finished process: wall seconds, CPU seconds (user+sys), peak RSS (MiB), output."""

    wall: float
    cpu: float
    rss_mib: float
    returncode: int
    stdout: str
    stderr: str


def run_timed(
    argv: Sequence[str | Path],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    capture: bool = False,
) -> Proc:
    """Run a process and time it from spawn to reaped (rusage from wait4, so it is the child's)."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=env if env is not None else bench_env(),
            stdin=subprocess.DEVNULL,
            stdout=out if capture else subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        out.seek(0)
        result = Proc(
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
    if check and result.returncode != 0:
        cmd = " ".join(str(a) for a in argv)
        raise RuntimeError(f"`{cmd}` exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def run_json(argv: Sequence[str | Path], cwd: Path | None = None, env: dict | None = None) -> dict:
    """Run a worker script that prints one JSON object as its last stdout line."""
    proc = run_timed(argv, cwd=cwd, env=env, capture=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"no output from {argv}: {proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def sync_disk() -> None:
    """Write back dirty pages outside the timed region: one round's writes don't bill the next."""
    os.sync()


# --- statistics and reporting ----------------------------------------------------------------


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def spread(xs: Sequence[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(min(xs))}–{fmt.format(max(xs))}"


@dataclass
class Result:
    """One compared figure. `ratio` is 'how many times better mloop is' (higher is better)."""

    bench: str
    case: str
    mloop: str  # formatted median figure
    other: str  # formatted median figure of the competitor
    ratio: float  # median of per-round ratios, oriented so that higher = mloop better
    ratio_spread: str
    target: float | None  # minimum acceptable ratio, None for information only
    target_text: str
    display: str = ""  # how to show the ratio, when "N× (spread)" would read the wrong way round

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target


@dataclass
class Skipped:
    bench: str
    case: str
    reason: str


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], out=None) -> None:
    out = out or sys.stdout
    cells = [[str(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line, file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)), file=out)
    out.flush()


def print_results(results: Sequence[Result | Skipped]) -> int:
    """Print a ratio table; return the number of targets missed or not measured."""
    rows = []
    bad = 0
    for r in results:
        if isinstance(r, Skipped):
            rows.append([r.bench, r.case, "-", "-", "-", r.reason, "SKIPPED"])
            bad += 1
            continue
        verdict = {True: "ok", False: "MISSED", None: "info"}[r.met]
        bad += r.met is False
        shown = r.display or f"{r.ratio:.2f}× ({r.ratio_spread})"
        rows.append([r.bench, r.case, r.mloop, r.other, shown, r.target_text, verdict])
    print_table(["bench", "case", "mloop", "other", "ratio (min–max)", "target", ""], rows)
    return bad


def machine_info(extra_versions: dict[str, str] | None = None) -> list[str]:
    """Lines describing the machine and tool versions, printed at the top of every run."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    py = subprocess.run(
        [str(project_python()), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    lines = [
        f"machine: {platform.node()} nproc={os.cpu_count()} cpu={cpu!r} mem={mem} load={load}",
        f"os: {platform.platform()}  python (project venv): {py}",
    ]
    versions = {"mloop": installed_version(project_python(), "mloop")}
    versions.update(extra_versions or {})
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def header(title: str, extra_versions: dict[str, str] | None = None) -> None:
    print(f"== {title} ==")
    for line in machine_info(extra_versions):
        print(f"# {line}")
    sys.stdout.flush()


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def tool_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (out.stdout or out.stderr).strip()
    if not text:
        return "?"
    # "hyperfine 1.15.0", "git version 2.39.5", "wrk debian/4.1.0-3+b2 [epoll] ..." (exit 1)
    found = re.search(r"\d+\.\d+[\w.+-]*", text.splitlines()[0])
    return found.group(0) if found else "?"
