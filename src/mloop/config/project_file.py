"""mloop.yaml: where a project's settings are written, read through a JSON copy kept in the
state folder, since importing a YAML parser costs more than a quick command's whole budget."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mloop.errors import ConfigError

PROJECT_FILE = "mloop.yaml"
STATE_DIR = ".mloop"


def read_project_file(path: Path) -> dict[str, Any]:
    """The settings in mloop.yaml, from a JSON copy in .mloop/ while the file is unchanged.

    Importing a YAML parser costs more than a quick command's whole budget (~15 ms of ~100),
    so the parsed settings are kept beside the store, stamped with the file's size, mtime and
    inode; a stamp written within a second of the file's last change is not trusted.
    """
    import json
    import time

    try:
        st = path.stat()
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    cache = path.parent / STATE_DIR / "settings.json"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached["stamp"] == stamp:
            return dict(cached["values"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    data = _parse_project_file(path)
    if st.st_mtime_ns < time.time_ns() - 1_000_000_000 and cache.parent.is_dir():
        try:
            tmp = cache.with_name(f".settings.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"stamp": stamp, "values": data}), encoding="utf-8")
            os.replace(tmp, cache)
        except (OSError, TypeError, ValueError):
            pass  # values JSON cannot hold, or a read-only folder: parse again next time
    return data


def _cannot_read(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"{path} cannot be read: {exc.strerror or exc}", "check its permissions")


def _parse_project_file(path: Path) -> dict[str, Any]:
    from mloop.domain.bounded_yaml import load_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})",
            f"{PROJECT_FILE} holds YAML text such as `project: churn`; `mloop init` writes one",
        ) from None
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    hint = "fix the file; see `mloop config show`"
    data = load_yaml(text, str(path), ConfigError, hint)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must be a mapping of settings, not {type(data).__name__}",
            "write one `key: value` per line, such as `project: churn`",
        )
    return data
