# qiskit-qnas developer commands.  Everything runs inside ./.venv, which `make install`
# creates (or reuses) on its own, so a fresh checkout needs only `make demo` or `make test`.

PYTHON ?= python3
VENV ?= .venv
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := constraints.txt
ARGS ?=
DIST_DIR ?= dist

export PIP_NO_INPUT := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
.PHONY: help install test lint demo bench dist clean

help:
	@echo "make install   create/reuse $(VENV) and install -e .[test] (with -c $(CONSTRAINTS))"
	@echo "make test      run the test suite (pass pytest options with ARGS=\"-k space\")"
	@echo "make lint      ruff check qiskit_qnas tests benchmarks"
	@echo "make demo      run the Iris search demo (python -m qiskit_qnas.demo)"
	@echo "make bench     run the benchmarks/*.py (not the paper reproduction or search fidelity), with the bench extra"
	@echo "make dist      build sdist and wheel into $(DIST_DIR)/"
	@echo "make clean     remove build artefacts and caches (keeps $(VENV))"

# The virtual environment itself: created once, then reused.
$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when the project metadata or the constraints change.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(VENV_PY)
	$(VENV_PY) -m pip install --upgrade pip
	$(VENV_PY) -m pip install -c $(CONSTRAINTS) -e ".[test]"
	@touch $@

install: $(STAMP)
	@:

# PYTEST_RC_FILE (optional, set by .ci/run): a file that receives pytest's own exit code,
# since make reports every failing recipe as exit code 2.
test: install
	@rc=0; $(VENV_PY) -m pytest -q $(ARGS) || rc=$$?; \
	if [ -n "$${PYTEST_RC_FILE:-}" ]; then echo $$rc > "$$PYTEST_RC_FILE"; fi; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit code 5)" >&2; fi; \
	exit $$rc

lint: install
	$(VENV)/bin/ruff check qiskit_qnas tests benchmarks

demo: install
	$(VENV_PY) -m qiskit_qnas.demo $(ARGS)

# Runs every benchmarks/*.py except helper modules named _*.py, the paper reproduction (40+ min
# a data set, run on its own: python benchmarks/reproduce_paper.py DATASET) and the search fidelity
# benchmark (also one data set a run: python benchmarks/search_fidelity.py DATASET), with the bench
# extra (PennyLane, for the comparison rows of engine_throughput.py).
BENCHES := $(filter-out benchmarks/_% benchmarks/reproduce_paper.py benchmarks/search_fidelity.py,$(sort \
	$(wildcard benchmarks/*.py)))
bench: install
	$(VENV_PY) -m pip install -q -c $(CONSTRAINTS) -e ".[bench]"
	@if [ -z "$(BENCHES)" ]; then echo "make bench: no benchmarks/*.py yet"; fi
	@set -e; for f in $(BENCHES); do echo "== $$f"; $(VENV_PY) $$f $(ARGS); done

dist: install
	$(VENV_PY) -m build --outdir $(DIST_DIR)

clean:
	rm -rf build $(DIST_DIR) *.egg-info .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
