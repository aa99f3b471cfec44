# QRM Cloud — `make run` serves the demo, `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 6543

.PHONY: run test lint bench system-deps clean

# a new package is picked up by the editable install only when it is re-installed
$(BIN)/.installed: setup.cfg pyproject.toml $(wildcard */__init__.py)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "Python 3.11 is required (spyne 2.14 does not import on 3.12+)"; exit 1; }
	# libvirt-python builds against libvirt-dev: system packages before pip
	bash scripts/install-system-deps.sh --build
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

## run: set up, upgrade the SQLite database, load the demo, serve on 127.0.0.1:$(PORT)
run: $(BIN)/.installed
	mkdir -p var
	$(BIN)/qrm db upgrade
	$(BIN)/qrm demo
	exec $(BIN)/qrm serve --port $(PORT)

## test: set up (Python and system packages the tests use) and run the whole suite
test: $(BIN)/.installed system-deps
	$(BIN)/pytest

system-deps:
	bash scripts/install-system-deps.sh

lint: $(BIN)/.installed
	$(BIN)/ruff check .

## bench: latency, throughput, billing and memory against their goals (BENCH_ARGS=--profile …)
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var *.egg-info .pytest_cache .ruff_cache
