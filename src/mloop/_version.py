"""mloop's version, written here only: the build (hatch, `[tool.hatch.version]` in
pyproject.toml), `mloop --version`, `mloop.__version__` and the model server's `/v2` read it.

A module of its own, not `importlib.metadata`, so reading it costs no start-up time and holds in a
source folder that was never installed.
"""

__version__ = "0.1.0"
