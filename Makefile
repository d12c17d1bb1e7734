# StreamGuard — the verbs. `make demo` and `make test` bootstrap .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.streamguard-installed
LOCKS := images/locks/cpu.txt images/locks/test.txt
PROFILE ?= local
DEMO_DIR ?= demo_output
KFP_ENDPOINT ?=
PYTEST_ARGS ?=

.PHONY: help venv demo test compile bench lint clean
help:
	@echo "make demo      run the whole pipeline locally (kfp.local) on the synthetic demo data"
	@echo "make test      run the test suite"
	@echo "make compile   compile the pipeline (PROFILE=$(PROFILE)) and check it against the KFP backend's rules"
	@echo "make bench     run benchmarks/ (prints name: value lines)"
	@echo "make lint      check the Python sources with ruff (rules in pyproject.toml)"

venv: $(STAMP)

# Install exactly what the CPU image installs (images/locks), then StreamGuard itself.
$(STAMP): pyproject.toml $(wildcard $(LOCKS))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian install the venv module: apt-get install -y python3-venv"; exit 2; }
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@if [ -f images/locks/cpu.txt ] && [ -f images/locks/test.txt ]; then \
	  $(PY) -m pip install --quiet --disable-pip-version-check -r images/locks/cpu.txt -r images/locks/test.txt; \
	else \
	  $(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0 '.[pipeline,test]'; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

demo: $(STAMP)
	$(PY) -m streamguard make-demo-data --output $(DEMO_DIR)/demo.jsonl
	$(PY) -m pipelines.run_local --input $(DEMO_DIR)/demo.jsonl --workdir $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Compile, then hold the YAML to the KFP backend's rules (pipelines/spec_check.py; docs/kubeflow.md).
compile: $(STAMP)
	$(PY) -m pipelines.compile --profile $(PROFILE)
	$(PY) -m pipelines.spec_check $(KFP_PACKAGE)

lint: $(STAMP)
	$(PY) -m ruff check .

# A benchmark that needs hardware this machine lacks (benchmarks/gpu.py without CUDA) exits 2: skipped.
bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b; rc=$$?; \
	  if [ $$rc -eq 2 ]; then echo "(skipped: $$b)"; elif [ $$rc -ne 0 ]; then exit 1; fi; done

clean:
	rm -rf $(DEMO_DIR) local_outputs .pytest_cache

-include mk/*.mk
