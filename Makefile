# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every test directory that opens a guard's state store, run again with each store in
# PostgreSQL (tests/store runs both backends in the main pass; the rest opens none, or
# runs the documented SQLite default); two processes, each on its own schemas.
PG_PASS := tests/tenancy tests/enforce tests/cli tests/anonymize tests/audit tests/detect \
	tests/ingest tests/otel tests/integrations tests/test_guard.py tests/test_workers.py

.PHONY: demo test lint typecheck bench fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kairo-guard demo --service examples/ingestion_service.py

# Both passes run in two processes (pytest-xdist); the tests that start a Ray cluster take
# turns across them (tests/support/ray_turns.py), so two clusters never share the cores.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n 2 -m "not slow"
	@echo "the tests that open a state store again, every store in PostgreSQL:"
	KG_TEST_STORE=postgresql $(BIN)/pytest -n 2 -m "not slow and not sqlite_only and not storeless" $(PG_PASS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_scan.py --kind all
	$(BIN)/python benchmarks/bench_fingerprint_check.py
	$(BIN)/python benchmarks/bench_fingerprint_check.py --false-positives
	$(BIN)/python benchmarks/bench_audit.py
	$(BIN)/python benchmarks/eval_fingerprints.py
	$(BIN)/python benchmarks/bench_fingerprint.py
	$(BIN)/python benchmarks/eval_pii.py
	$(BIN)/python benchmarks/bench_erasure.py
	$(BIN)/python benchmarks/bench_otel.py
	$(BIN)/python benchmarks/bench_scrub.py
	$(BIN)/python benchmarks/bench_seal.py
	$(BIN)/python benchmarks/bench_middleware.py
	$(BIN)/python benchmarks/bench_middleware_cpu.py

# Fuzzing (atheris; not part of `make test`, which runs a short smoke of each harness):
# every harness for FUZZ_RUNS executions, one after another; results in benchmarks/RESULTS.md
FUZZ_RUNS ?= 1000000

fuzz: $(STAMP)
	$(BIN)/python -m fuzz.campaign --runs $(FUZZ_RUNS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
