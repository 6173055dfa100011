# hotline: `make run` serves config/ on 127.0.0.1; `make test` runs lint, types and the whole test suite.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=

.PHONY: run test system-tools lint format check bench bench-tcp bench-mixed bench-lookup bench-hooks bench-desk bench-board bench-shared bench-records bench-report bench-udp lock clean

$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

run: $(STAMP)  ## serve config/ on 127.0.0.1 (10086/tcp, 9108 admin)
	$(BIN)/hotline serve --config config $(ARGS)

check: $(STAMP)  ## lint the shipped menu
	$(BIN)/hotline check --config config

lint: $(STAMP)  ## ruff (lint and format check) and mypy --strict
	$(BIN)/ruff check app tests benchmarks scripts
	$(BIN)/ruff format --check app tests benchmarks scripts
	$(BIN)/mypy app

format: $(STAMP)
	$(BIN)/ruff format app tests benchmarks scripts
	$(BIN)/ruff check --fix app tests benchmarks scripts

system-tools:  ## the system programs the tests drive (nc, telnet): installed with apt-get when missing
	scripts/system-tools

test: system-tools lint  ## everything CI runs
	$(BIN)/hotline check --config config
	$(BIN)/hotline test --coverage --config config tests/conversations
	$(BIN)/pytest -q $(ARGS)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) requirements-bench.lock
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements-bench.lock
	touch $@

bench: $(BENCH_STAMP) system-tools  ## side-by-side benchmarks: TCP, mixed workload, HTTP look-ups, agent desk, boards, replicas through Redis, records, UDP (servers on CPU 0, load on CPU 1); needs gcc
	$(BIN)/python -m benchmarks

bench-tcp: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.tcp $(ARGS)

bench-mixed: $(STAMP)  ## the mixed workload on the shipped menu and four generated shapes (benchmarks/menus.py), then the cost of each step kind on each (callgrind)
	$(BIN)/python -m benchmarks.mixed $(ARGS)

bench-lookup: $(STAMP)  ## a menu step with an HTTP look-up (a local backend answering at once) beside a table look-up
	$(BIN)/python -m benchmarks.lookup $(ARGS)

bench-hooks: $(STAMP) system-tools  ## webhook deliveries drained per second to a local receiver (SQLite; ARGS=--postgres also PostgreSQL)
	$(BIN)/python -m benchmarks.hooks $(ARGS)

bench-desk: $(STAMP)
	$(BIN)/python -m benchmarks.desk $(ARGS)

bench-board: $(STAMP)
	$(BIN)/python -m benchmarks.board $(ARGS)

bench-shared: $(STAMP) system-tools  ## replicas through Redis: menu path, offers per second, the relay's latency
	$(BIN)/python -m benchmarks.shared $(ARGS)

bench-records: $(STAMP) system-tools
	$(BIN)/python -m benchmarks.records $(ARGS)

bench-report: $(STAMP)  ## `hotline report` over 1,000,000 desk calls, on SQLite and PostgreSQL
	$(BIN)/python -m benchmarks.report $(ARGS)

bench-udp: $(STAMP)
	$(BIN)/python -m benchmarks.udp $(ARGS)

lock:  ## re-pin dependencies after editing pyproject.toml (needs uv: pip install uv)
	uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -q -o requirements.lock
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -q -o requirements-dev.lock
	uv pip compile pyproject.toml --extra dev --extra bench --python-version 3.11 --generate-hashes -q -o requirements-bench.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
