# Spine Center CRM — `make run` to use it, `make test` to check it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
FLASK := $(BIN)/flask --app wsgi
PYTEST_ARGS ?=
# The demo data has calls on the main line and a Google Ads tracking line.
export CLINIC_LINES ?= +19724995457=main,+12145550100=google-ads
PG_TEST_URL ?= $(or $(TEST_DATABASE_URL),postgresql+psycopg://crm:crm@127.0.0.1:5432/crm)

.PHONY: run install db test test-pg lint format bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

db: install
	$(FLASK) db upgrade

## Set everything up on first run (virtualenv, packages, schema, demo data) and serve on SQLite.
run: db
	$(FLASK) demo
	@echo "Serving on http://127.0.0.1:$(PORT)  (Ctrl-C to stop)"
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

## The whole suite on SQLite (set TEST_DATABASE_URL=postgresql+psycopg://… to run it on PostgreSQL).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-pg: install
	TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/python -m pytest -m "not browser" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Speed figures: the tagger, a 50,000-row CSV import, and every page, the form and the webhook at
## 100k leads / 1M calls on SQLite and PostgreSQL under gunicorn (data built once, in .bench/ and
## crm_bench; PostgreSQL installed and started first when missing). Writes BENCH.md.
## BENCH_PG_DB names the PostgreSQL data set (e.g. a fresh one, to time building it).
BENCH_PG_DB ?= crm_bench
bench: install
	.ci/postgres.sh
	$(BIN)/python bench/bench_triage.py
	$(BIN)/python bench/bench_import.py --rows 50000
	$(BIN)/python bench/run_bench.py --db both --pg-db $(BENCH_PG_DB)

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
