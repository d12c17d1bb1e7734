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

# Install exactly what the CPU image installs (images/locks), then StreamGuard itself. The locks are installed
# with uv (pinned; the tool that writes them, images/locks/compile.sh): ~45 s on 2 cores where pip takes ~110 s,
# most of it compiling .pyc one file at a time. Bytecode is compiled at install time either way: with
# PYTHONDONTWRITEBYTECODE=1 in the environment every process would otherwise compile torch from source again.
# pip's find-links (a local wheel directory, e.g. for torch's CPU build) are passed on to uv; if uv cannot be
# installed or cannot resolve the locks, pip installs them instead.
UV_VERSION ?= 0.13.9
$(STAMP): pyproject.toml $(wildcard $(LOCKS))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian install the venv module: apt-get install -y python3-venv"; exit 2; }
	@if [ -f images/locks/cpu.txt ] && [ -f images/locks/test.txt ]; then \
	  links=""; for d in $${PIP_FIND_LINKS:-} $$($(PY) -m pip config get global.find-links 2>/dev/null); do \
	    links="$$links --find-links $$d"; done; \
	  if $(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) && \
	     $(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode $$links \
	       -r images/locks/cpu.txt -r images/locks/test.txt; then \
	    echo "installed images/locks/cpu.txt + test.txt with uv $(UV_VERSION)"; \
	  else \
	    echo "uv failed (above): installing images/locks with pip instead"; \
	    $(PY) -m pip install --quiet --disable-pip-version-check -r images/locks/cpu.txt -r images/locks/test.txt; \
	  fi; \
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
