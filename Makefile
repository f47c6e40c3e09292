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
.PHONY: help install test test-min lint demo bench dist clean

help:
	@echo "make install   create/reuse $(VENV) and install -e .[test] (with -c $(CONSTRAINTS))"
	@echo "make test      run the test suite (pass pytest options with ARGS=\"-k space\")"
	@echo "make test-min  the fast tests on the lowest declared dependency versions, in $(MIN_VENV)"
	@echo "make lint      ruff check qiskit_qnas tests benchmarks, then mypy (type check of qiskit_qnas)"
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

# The lowest declared versions: every dependency of pyproject.toml at its '>=' floor (listed by
# .ci/min_requirements.py from pyproject.toml itself, so the job cannot drift from it), in a venv
# of its own. torch is the exception: it comes from constraints.txt (the CPU build), because any
# other torch release pulls a multi-GB CUDA build here. The package goes in with --no-deps so that
# nothing upgrades a floor.
MIN_VENV ?= .venv-min
MIN_PY := $(MIN_VENV)/bin/python
MIN_STAMP := $(MIN_VENV)/.installed
# One fast pass over what each dependency provides: the space and NSGA-II (pymoo), circuits and the
# engine against EstimatorQNN, X/Y observables and library gates included (qiskit, qiskit-machine-learning,
# sympy), scikit-learn's estimator checks, Aer, a scaled device's noise and Runtime local testing mode
# (qiskit-aer, qiskit-ibm-runtime), cutting (qiskit-addon-cutting) and the Pareto plot (matplotlib).
MIN_TESTS ?= tests/test_space.py tests/test_circuits.py tests/test_search.py tests/test_sklearn_checks.py \
	tests/test_pareto_plot.py tests/test_engine.py::test_gradients_equal_estimator_qnn \
	tests/test_targets.py::test_aer_noise_model_applies tests/test_targets.py::test_runtime_local_own_estimator_seeded \
	tests/test_targets.py::test_runtime_proxy_grows_with_the_mitigation_as_documented \
	tests/test_cutting.py::test_counts_match_real_generation tests/test_cutting.py::test_exact_cut_expectation_values_equal_uncut \
	tests/test_cutting.py::test_runtime_fake_backend_local_mode_in_a_batch \
	tests/test_estimator.py::test_close_ends_the_runtime_batch_the_fitted_target_holds tests/test_qnn_breadth.py \
	tests/test_noise.py::test_aer_on_a_scaled_backend_measures_more_noise_as_the_factor_grows \
	tests/test_quantum_dominant.py
MIN_ARGS ?= -m "not slow"

$(MIN_STAMP): pyproject.toml $(CONSTRAINTS) .ci/min_requirements.py
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(PYTHON) .ci/min_requirements.py --except torch pyproject.toml > $(MIN_VENV)/requirements-min.txt
	$(MIN_PY) -m pip install -c $(CONSTRAINTS) -r $(MIN_VENV)/requirements-min.txt torch pytest pytest-timeout
	$(MIN_PY) -m pip install --no-deps -e .
	@touch $@

test-min: $(MIN_STAMP)
	$(MIN_PY) -m pip list --format=freeze | grep -iE "^($$(cut -d= -f1 $(MIN_VENV)/requirements-min.txt | paste -sd'|')|torch)=="
	$(MIN_PY) -m pytest -q $(MIN_ARGS) $(MIN_TESTS) $(ARGS)

# mypy takes its settings (python_version, files = qiskit_qnas, the untyped dependencies) from pyproject.toml.
lint: install
	$(VENV)/bin/ruff check qiskit_qnas tests benchmarks
	$(VENV)/bin/mypy

demo: install
	$(VENV_PY) -m qiskit_qnas.demo $(ARGS)

# Runs every benchmarks/*.py except helper modules named _*.py, the paper reproduction (40+ min
# a data set, run on its own: python benchmarks/reproduce_paper.py DATASET), the search fidelity
# benchmark (also one data set a run: python benchmarks/search_fidelity.py DATASET) and the noise
# study (hours, on the MNIST files: python benchmarks/noise_study.py --data-dir DIR), with the bench
# extra (PennyLane, for the comparison rows of engine_throughput.py).
BENCHES := $(filter-out benchmarks/_% benchmarks/reproduce_paper.py benchmarks/search_fidelity.py \
	benchmarks/noise_study.py,$(sort $(wildcard benchmarks/*.py)))
bench: install
	$(VENV_PY) -m pip install -q -c $(CONSTRAINTS) -e ".[bench]"
	@if [ -z "$(BENCHES)" ]; then echo "make bench: no benchmarks/*.py yet"; fi
	@set -e; for f in $(BENCHES); do echo "== $$f"; $(VENV_PY) $$f $(ARGS); done

dist: install
	$(VENV_PY) -m build --outdir $(DIST_DIR)

clean:
	rm -rf build $(DIST_DIR) *.egg-info .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
