# composable-cdp: `make demo` and `make test` are the two commands that matter.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export CDP_PROJECT_ROOT := $(CURDIR)

.PHONY: install demo test bench ui lint fmt docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the locked dependencies

demo: install ## generate data, serve fake APIs, ingest -> dbt build -> syncs, print a summary
	$(BIN)/cdp demo

test: install ## the whole test suite (slow scale tests are under `make bench`)
	$(BIN)/pytest -m "not bench" -n 2 --dist loadfile

bench: install ## benchmarks: print figures and comparisons
	$(BIN)/cdp bench

ui: install ## Dagster webserver + daemon on 127.0.0.1:3000
	$(BIN)/cdp ui

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: install ## dbt docs generate (lineage from sources to segments)
	cd dbt_project && ../$(BIN)/dbt docs generate --profiles-dir .. --project-dir .

clean:
	rm -rf data/*.duckdb* dbt_project/target dbt_project/logs .dagster_home/storage
