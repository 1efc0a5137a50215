# The two commands: `make run` starts the service, `make test` runs the tests.
# Both create .venv and install the project with its dev extras on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test reliability bench bench-quick lint typecheck check clean record-histories

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/provehandling dev

# The whole suite on the time-skipping server, then every Temporal-facing test that needs no
# long timer on the dev server (the same server binary production-like setups run).
DEV_SERVER_TESTS := tests/test_lifecycle_happy.py tests/test_validators.py tests/test_history.py \
	tests/test_search_attributes.py tests/test_api_lifecycle.py tests/test_api_errors.py \
	tests/test_notifications_delivery.py tests/test_notifications_digest.py \
	tests/test_metrics.py tests/test_prometheus_scrape.py

test: $(STAMP)
	$(BIN)/pytest --ignore=tests/reliability $(PYTEST_ARGS)
	$(BIN)/pytest --server=dev -m "not time_skipping_only" $(DEV_SERVER_TESTS) $(PYTEST_ARGS)

# Faults a trial must survive: killed workers and servers, PostgreSQL outages, lost workers,
# racing commands, 1,000 concurrent lifecycles through the API (PROVE_LOAD_TRIALS), mail and
# webhook receivers down then up, and 1,000+ generated requests over the OpenAPI document.
reliability: $(STAMP)
	$(BIN)/pytest tests/reliability $(PYTEST_ARGS)
	$(BIN)/pytest tests/test_notifications_delivery.py \
		-k "down_for_a_while or answering_500 or per_trial_order or two_dispatchers" $(PYTEST_ARGS)
	PROVE_SCHEMATHESIS_EXAMPLES=40 PROVE_SCHEMATHESIS_MIN_REQUESTS=1000 \
		$(BIN)/pytest -s tests/test_api_schemathesis.py $(PYTEST_ARGS)

# Benchmarks: print figures, write them to bench/results.json and into the README's benchmark
# section (bench-quick: a short run for CI, written to bench/results-quick.json only).
bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.readme bench/results.json

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# Record histories of today's TrialWorkflow for the replay tests; commit them with a release.
record-histories: $(STAMP)
	$(BIN)/pytest -q tests/record_histories.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
