"""Formatting for people (tables, trees, progress on a terminal) and for programs (`--json`)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mloop.domain.records import human_size, to_plain


def is_terminal() -> bool:
    return sys.stdout.isatty()


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_plain(value), indent=2, default=str, allow_nan=True) + "\n")


def line(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    """A warning on stderr, so stdout stays what the command answers."""
    sys.stderr.write(f"warning: {text}\n")


def when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def size(n: int | None) -> str:
    return "-" if n is None else human_size(n)


def number(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "-"
    if value != value:
        return "nan"
    return f"{value:.{digits}g}"


def percent(value: float | None, scale: float = 100.0) -> str:
    """`value` (a fraction; with `scale` 1, already a percent) as `12.34%`."""
    return "-" if value is None else f"{value * scale:.2f}%"


def milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A table: drawn with rich on a terminal, plain aligned columns otherwise (pipes, CI)."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    if is_terminal():
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(title=title, show_edge=False, header_style="bold")
        for column in columns:
            rich_table.add_column(column, overflow="fold")
        for row in cells:
            rich_table.add_row(*row)
        Console().print(rich_table)
        return
    if title:
        line(title)
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    line(fmt.format(*columns).rstrip())
    for row in cells:
        line(fmt.format(*row).rstrip())


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        line(f"{key + ':':<{width + 1}} {value}")


class Bar:
    """What `progress` yields: call it with the amount done; `total` may come later."""

    def __init__(self, bar: Any = None, task: Any = None) -> None:
        self._bar = bar
        self._task = task

    def __call__(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def total(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=n)


@contextmanager
def progress(description: str, total: int | None, quiet: bool) -> Iterator[Bar]:
    """A progress bar on a terminal; nothing in CI, in pipes or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield Bar()
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        yield Bar(bar, bar.add_task(description, total=total))
