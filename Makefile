# Two commands: `make demo` and `make test`. Both set everything up first (`make install`).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit system bench bench-system clean

install: $(STAMP)

# The lock pins every package with hashes; the project itself is installed editable on top.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Debian packages the tests use: PostgreSQL 15 server binaries (initdb, pg_ctl), git, strace
# (a test counts the sync system calls of the object store),
# Chromium (driven by Playwright through executable_path), Prometheus and its Alertmanager
# (started by the tests themselves; the packages' own services are stopped and disabled where
# systemd started them, so nothing is left listening on 9090 and 9093).
system:
	@command -v git >/dev/null || (apt-get update -qq && apt-get install -y -qq git)
	@command -v strace >/dev/null || (apt-get update -qq && apt-get install -y -qq strace)
	@command -v chromium >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)
	@command -v prometheus >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus && \
		 (systemctl disable --now prometheus >/dev/null 2>&1 || true))
	@command -v prometheus-alertmanager >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus-alertmanager && \
		 (systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true))
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq postgresql)

demo: install
	@bash docs/demo.sh --keep

lint: install
	$(BIN)/ruff format --check src tests bench docs
	$(BIN)/ruff check src tests bench docs
	$(BIN)/lint-imports
	$(BIN)/mypy

test: install system lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# The serving benchmark drives its load with wrk (Debian package `wrk`).
bench-system:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

bench: install bench-system
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
