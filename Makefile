# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Extra pytest arguments, e.g. `make unit PYTEST_ARGS="-k rdb"`; CI passes --require-all.
PYTEST_ARGS ?=

.PHONY: run test lint typecheck unit integration screenshots bench soak system-deps clean

$(BIN)/dcs-migration: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --upgrade -e '.[test]'
	touch $@

# redis-server, redis-cli, PostgreSQL (for the store's tests) and Chromium (for the
# console's browser tests) from Debian's packages, when the machine has none.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing="redis-server redis-tools"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/bin/chromium ] || command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(BIN)/dcs-migration
	$(BIN)/dcs-migration serve --host 127.0.0.1 --port 8080

lint: $(BIN)/dcs-migration
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(BIN)/dcs-migration
	$(BIN)/mypy

# The tiers (markers in pyproject.toml): `unit` runs the tests that start no process and
# need no server (under a minute); `integration` runs the rest: redis-server flavours and
# clusters, S3, PostgreSQL, the service and the CLI, the console in headless Chromium,
# faults, fuzzing. `test` runs both.
unit: $(BIN)/dcs-migration
	$(BIN)/pytest -q -m process_free $(PYTEST_ARGS)

integration: $(BIN)/dcs-migration system-deps
	$(BIN)/pytest -q -m "not process_free" --durations=25 $(PYTEST_ARGS)

test: lint typecheck unit integration

# The console's pictures in the README, taken again by its browser tests.
screenshots: $(BIN)/dcs-migration system-deps
	$(BIN)/pytest -q tests/test_console.py --console-screenshots docs/console

# Whole-process import timings beside redis-cli --pipe and redis-server's own load, with
# peak memory (BENCH_ROUNDS=3 interleaved rounds: about 10 minutes on 2 cores); then the
# distributed setup's throughput with 1, 2 and 4 workers and its scaling (about 5 more);
# then online migration beside a native replica: full sync, and lag under a ladder of
# write rates (about 4 more).
bench: $(BIN)/dcs-migration system-deps
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/run.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/online.py

# The service under load and faults (tasks, signed requests, killed targets and service,
# dropped S3 connections), then the readers' atheris fuzzing for FUZZ_SECONDS beside the
# API's schemathesis fuzzing; a table at the end. `bench/soak.py --quick`: 1-2 minutes.
soak: $(BIN)/dcs-migration system-deps
	FUZZ_SECONDS=600 $(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) build *.egg-info bench/.work
