# The two quick-start commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test ui bench clean dg-check

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "spine_dagster needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python examples/demo.py

test: $(BIN)/.installed
	$(BIN)/python -m pytest

ui: $(BIN)/.installed
	DAGSTER_HOME=$${DAGSTER_HOME:-$$HOME/.spine_dagster/dagster_home} $(BIN)/dagster dev -w workspace.yaml

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# `dg check defs` on the example dg project (CI runs it; tests/test_component.py does too)
dg-check: $(BIN)/.installed
	cd examples/dg_project && DAGSTER_HOME=$$(mktemp -d) ../../$(BIN)/dg check defs
