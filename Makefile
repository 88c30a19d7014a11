# Two commands for a fresh machine (Python 3.11+ and make):
#   make run    install into .venv, then run the daily pipeline on the simulated market
#   make test   install into .venv (with test tools), then run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
DATE   ?=
RUN_ARGS ?= $(if $(DATE),--date $(DATE),)
PYTEST_ARGS ?=

.PHONY: install run test lint bench dev ddl clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	@$(UV) pip install -q --python $(PY) -e ".[dev]"
	@touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/options-v4 run $(RUN_ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .

bench: install
	$(PY) benchmarks/bench_iv.py
	$(PY) benchmarks/bench_strategies.py
	$(PY) benchmarks/bench_pipeline.py

# Dagster UI (webserver + daemon) on http://127.0.0.1:3000 with the local instance.
dev: install
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.dagster_home} ; mkdir -p $$DAGSTER_HOME ; \
	DAGSTER_HOME=$$DAGSTER_HOME $(VENV)/bin/dg dev

ddl: install
	$(PY) scripts/generate_ddl.py

clean:
	rm -rf $(VENV) .data .dagster_home
