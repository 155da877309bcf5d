# The two quick-start commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
# The demo's home (checkpoints and Dagster instance): $SPINE_DAGSTER_HOME, else ~/.spine_dagster
SPINE_HOME = $${SPINE_DAGSTER_HOME:-$$HOME/.spine_dagster}

.PHONY: demo test ui bench clean dg-check

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "spine_dagster needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python examples/demo.py

# Three workers on two cores: many tests wait on Dagster's processes (webserver, daemon, run
# workers). --dist loadfile keeps a file's tests (and its module-scoped deployment) on one worker.
test: $(BIN)/.installed
	$(BIN)/python -m pytest -n 3 --dist loadfile

# The UI on the instance the demo wrote to; `make ui PORT=3001` for another port. The URL is
# recorded in $(SPINE_HOME)/webserver_url, where spine_resume and SpineDagsterClient look for it.
ui: $(BIN)/.installed
	mkdir -p "$(SPINE_HOME)/dagster_home" && echo "http://127.0.0.1:$(PORT)" > "$(SPINE_HOME)/webserver_url"
	@# Create the instance's storage first: on a new SQLite home, dagster dev's three processes
	@# would all create it at once, and Dagster's migrations can race there.
	DAGSTER_HOME=$${DAGSTER_HOME:-$(SPINE_HOME)/dagster_home} \
	$(BIN)/python -c "from dagster import DagsterInstance; DagsterInstance.get().dispose()"
	DAGSTER_HOME=$${DAGSTER_HOME:-$(SPINE_HOME)/dagster_home} \
	SPINE_DAGSTER_WEBSERVER_URL=http://127.0.0.1:$(PORT) \
	$(BIN)/dagster dev -w workspace.yaml -p $(PORT)

bench: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e ".[bench]"   # DBOS, measured side by side
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# `dg check defs` on the example dg project (CI runs it; tests/test_component.py does too)
dg-check: $(BIN)/.installed
	cd examples/dg_project && DAGSTER_HOME=$$(mktemp -d) ../../$(BIN)/dg check defs
