# Kubeflow Pipelines verbs (included by the Makefile). See docs/kubeflow.md.
#
#   make submit   PROFILE=gke-a100 KFP_ENDPOINT=https://host PARAMS='input_uri=s3://streamguard/data/devign.jsonl'
#                 upload the compiled pipeline as a new version of pipeline $(KFP_PIPELINE), start a run of it
#                 (`kfp run create`); data_version is filled from the data's ETag / size+mtime unless given
#   make schedule PROFILE=gke-a100 KFP_ENDPOINT=... SCHEDULE='0 0 2 * * *' SCHEDULE_PARAMS='input_uri=... profile=production'
#                 upload a new version and create a recurring run of it (kfp.Client, typed parameters):
#                 enabled, max concurrency 1, no catch-up; each run reads its data's version itself
#   make runs     KFP_ENDPOINT=...   list runs and recurring runs, newest first
#
# PARAMS are NAME=VALUE words, checked against the compiled pipeline's inputs (names, required ones,
# types: seeds=[42,7] require_gpu=true, JSON for lists/dicts); single-quote a value that holds spaces
# or double quotes:
#   PARAMS="input_uri=s3://streamguard/data/x.jsonl 'overrides={\"train\": {\"epochs\": 3}}'"
# data_version: `make submit` fills it from the data (needs MINIO_* here for s3://; otherwise left empty
# and the pipeline's source_version step reads it in the cluster). `make schedule` leaves it empty so
# that every scheduled run reads the version of the data as it is then (a fixed value would let
# KFP's cache serve the first night's dataset forever).
# KFP_ARGS: extra global kfp options (--namespace NS, --existing-token TOKEN, ...).

KFP ?= $(if $(wildcard $(VENV)/bin/kfp),$(VENV)/bin/kfp,kfp)
KFP_PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,$(PYTHON))
KFP_ARGS ?=
KFP_CLI = PYTHONWARNINGS=ignore::FutureWarning $(KFP) --endpoint $(KFP_ENDPOINT) $(KFP_ARGS)
KFP_HELPER = $(KFP_PYTHON) mk/kfp_helper.py
KFP_PIPELINE ?= streamguard-training
KFP_EXPERIMENT ?= streamguard
KFP_PACKAGE ?= $(if $(filter local,$(PROFILE)),pipelines/streamguard_training.yaml,pipelines/compiled/streamguard_training.$(PROFILE).yaml)
KFP_STAMP := $(shell date -u +%Y%m%d-%H%M%S)
KFP_GIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo nogit)
KFP_VERSION_NAME ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)-$(PROFILE)-$(KFP_GIT)-$(KFP_STAMP)
RUN_NAME ?= streamguard-$(PROFILE)-$(KFP_STAMP)
PARAMS ?=
# 6 fields: second minute hour day-of-month month day-of-week (here: every day at 02:00:00 UTC)
SCHEDULE ?= 0 0 2 * * *
SCHEDULE_NAME ?= streamguard-$(PROFILE)-nightly
SCHEDULE_PARAMS ?= $(PARAMS)
RUNS_MAX ?= 20
KFP_NAME_FILTER = {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": "$(KFP_PIPELINE)"}]}

# Upload $(KFP_PACKAGE) as version $(KFP_VERSION_NAME) of pipeline $(KFP_PIPELINE) (created on first use);
# leaves the shell variables pid / vid set.
define kfp_upload_version
	if [ -z "$$($(KFP_CLI) --output json pipeline list --filter '$(KFP_NAME_FILTER)' | $(KFP_HELPER) field pipeline_id)" ]; then \
	  echo "== creating pipeline $(KFP_PIPELINE)"; \
	  $(KFP_CLI) pipeline create --pipeline-name $(KFP_PIPELINE) \
	    --description "StreamGuard training: transformer, GNN and fusion over several seeds" $(KFP_PACKAGE) >/dev/null; \
	fi; \
	echo "== uploading $(KFP_PACKAGE) as version $(KFP_VERSION_NAME) of $(KFP_PIPELINE)"; \
	out=$$($(KFP_CLI) --output json pipeline create-version --pipeline-name $(KFP_PIPELINE) \
	  --pipeline-version "$(KFP_VERSION_NAME)" $(KFP_PACKAGE)); \
	pid=$$(printf '%s\n' "$$out" | $(KFP_HELPER) field pipeline_id); \
	vid=$$(printf '%s\n' "$$out" | $(KFP_HELPER) field pipeline_version_id); \
	test -n "$$pid" -a -n "$$vid" || { echo "error: no pipeline/version id in the reply: $$out" >&2; exit 1; }
endef

.PHONY: submit schedule runs kfp-check kfp-package
kfp-check:
	@test -n "$(KFP_ENDPOINT)" || { echo "error: set KFP_ENDPOINT to the Kubeflow Pipelines API, e.g. make $(MAKECMDGOALS) KFP_ENDPOINT=http://localhost:8080" >&2; exit 2; }

kfp-package:
	@test "$(PROFILE)" != local || { echo "error: PROFILE=local has no cluster settings; use PROFILE=gke-a100 or PROFILE=generic-a100 (see docs/kubeflow.md)" >&2; exit 2; }
	@test -f "$(KFP_PACKAGE)" || { echo "error: $(KFP_PACKAGE): not found; run make compile PROFILE=$(PROFILE)" >&2; exit 2; }

submit: kfp-check kfp-package
	@set -euf -o pipefail; set +B; \
	$(KFP_HELPER) check-params $(KFP_PACKAGE) $(PARAMS); \
	dv=$$($(KFP_HELPER) data-version $(PARAMS)); \
	$(kfp_upload_version); \
	echo "== starting run $(RUN_NAME) in experiment $(KFP_EXPERIMENT)$${dv:+ (data_version $$dv)}"; \
	$(KFP_CLI) run create --experiment-name $(KFP_EXPERIMENT) --run-name "$(RUN_NAME)" \
	  --pipeline-id "$$pid" --version "$$vid" $(PARAMS) $${dv:+"data_version=$$dv"}

schedule: kfp-check kfp-package
	@set -euf -o pipefail; set +B; \
	set -- $(SCHEDULE); test $$# -eq 6 || { echo "error: SCHEDULE='$(SCHEDULE)': a cron expression needs 6 fields (second minute hour day month weekday), got $$#" >&2; exit 2; }; \
	$(KFP_HELPER) check-params $(KFP_PACKAGE) $(SCHEDULE_PARAMS); \
	$(kfp_upload_version); \
	echo "== creating recurring run $(SCHEDULE_NAME): '$(SCHEDULE)', enabled, max concurrency 1, no catch-up"; \
	PYTHONWARNINGS=ignore::FutureWarning $(KFP_HELPER) schedule $(KFP_PACKAGE) --endpoint $(KFP_ENDPOINT) $(KFP_ARGS) \
	  --experiment $(KFP_EXPERIMENT) --name "$(SCHEDULE_NAME)" --cron "$(SCHEDULE)" \
	  --pipeline-id "$$pid" --version-id "$$vid" $(SCHEDULE_PARAMS)

runs: kfp-check
	@set -euf -o pipefail; \
	echo "== runs"; $(KFP_CLI) run list --max-size $(RUNS_MAX); \
	echo "== recurring runs"; $(KFP_CLI) recurring-run list --max-size $(RUNS_MAX)
