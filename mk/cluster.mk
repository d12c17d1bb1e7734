# Container images and cluster deployment. Included by the top-level Makefile; also usable alone:
#   make -f mk/cluster.mk images REGISTRY=ghcr.io/acme [VERSION=0.1.0]
#   make -f mk/cluster.mk deploy OVERLAY=gke-a100
# Every variable can be given on the command line. Paths are relative to the repository root.

# The image tag is the package version (pyproject.toml), the tag the components use.
VERSION ?= $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' pyproject.toml | head -n 1)
REGISTRY ?=
OVERLAY ?= local
DOCKER ?= docker
PLATFORM ?= linux/amd64
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo .venv/bin/kubectl)
# Namespace whose `mlpipeline-minio-artifact` (KFP's object-store credentials) secret.env is written from
# (OVERLAY=kfp-*): the overlay's own namespace, where the runs execute.
KF_NAMESPACE ?= $(shell sed -n 's/^namespace: *//p' manifests/overlays/$(OVERLAY)/kustomization.yaml 2>/dev/null | head -n 1)

CPU_IMAGE = $(REGISTRY)/streamguard-cpu:$(VERSION)
CUDA_IMAGE = $(REGISTRY)/streamguard-cuda:$(VERSION)
SECRET_ENV = manifests/base/secret.env
OVERLAYS = $(notdir $(patsubst %/,%,$(dir $(wildcard manifests/overlays/*/kustomization.yaml))))

.PHONY: images images-build image-cpu image-cuda locks deploy cluster-render cluster-secret \
        cluster-check-registry cluster-check-overlay

## images: build and push streamguard-cpu and streamguard-cuda, tagged $(VERSION)
images: images-build
	$(DOCKER) push $(CPU_IMAGE)
	$(DOCKER) push $(CUDA_IMAGE)

## images-build: build both images without pushing
images-build: image-cpu image-cuda

image-cpu: cluster-check-registry
	DOCKER_BUILDKIT=1 $(DOCKER) build --platform $(PLATFORM) --build-arg VERSION=$(VERSION) \
	  -f images/cpu.Dockerfile -t $(CPU_IMAGE) .

image-cuda: cluster-check-registry
	DOCKER_BUILDKIT=1 $(DOCKER) build --platform $(PLATFORM) --build-arg VERSION=$(VERSION) \
	  -f images/cuda.Dockerfile -t $(CUDA_IMAGE) .

## locks: regenerate images/locks/*.txt from pyproject.toml (uv pip compile; needs PyPI)
locks:
	images/locks/compile.sh

## deploy: render manifests/overlays/$(OVERLAY) and apply it to the current kubectl context
deploy: cluster-check-overlay cluster-secret
	$(KUBECTL) kustomize manifests/overlays/$(OVERLAY) | $(KUBECTL) apply -f -

## cluster-render: print an overlay's objects (works on a clean clone: dummy credentials)
cluster-render: cluster-check-overlay
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cp -R manifests "$$tmp/" \
	  && { [ -f "$$tmp/$(SECRET_ENV)" ] || cp "$$tmp/$(SECRET_ENV).example" "$$tmp/$(SECRET_ENV)"; } \
	  && $(KUBECTL) kustomize "$$tmp/manifests/overlays/$(OVERLAY)"

# The Secret's env file is git-ignored. local: the example's dummy values are fine; kfp-*: copied from
# KFP's mlpipeline-minio-artifact in the run namespace (standalone: KFP's admin key; multi-user 2.16+: the
# profile's own SeaweedFS key); elsewhere it must be written by hand, and deploying the example's dummy
# values is refused.
cluster-secret:
	@if [ ! -f $(SECRET_ENV) ]; then \
	  case "$(OVERLAY)" in \
	    local) cp $(SECRET_ENV).example $(SECRET_ENV); \
	           echo "note: $(SECRET_ENV) created from the example (dummy credentials, local only)" >&2 ;; \
	    kfp-*) \
	      ak=$$($(KUBECTL) -n $(KF_NAMESPACE) get secret mlpipeline-minio-artifact -o jsonpath='{.data.accesskey}' | base64 -d) && \
	      sk=$$($(KUBECTL) -n $(KF_NAMESPACE) get secret mlpipeline-minio-artifact -o jsonpath='{.data.secretkey}' | base64 -d) && \
	      [ -n "$$ak" ] && [ -n "$$sk" ] && (umask 077 && printf 'MINIO_ACCESS_KEY=%s\nMINIO_SECRET_KEY=%s\n' "$$ak" "$$sk" > $(SECRET_ENV)) && \
	      echo "note: $(SECRET_ENV) written from $(KF_NAMESPACE)/mlpipeline-minio-artifact" >&2 \
	      || { echo "error: could not read secret mlpipeline-minio-artifact in namespace $(KF_NAMESPACE)" >&2; exit 2; } ;; \
	    *) echo "error: $(SECRET_ENV) is missing: copy $(SECRET_ENV).example and set real MinIO credentials" >&2; exit 2 ;; \
	  esac; \
	fi
	@if [ "$(OVERLAY)" != local ] && cmp -s $(SECRET_ENV) $(SECRET_ENV).example; then \
	  echo "error: $(SECRET_ENV) still holds the example's dummy credentials; refusing to deploy $(OVERLAY)" >&2; exit 2; \
	fi

cluster-check-registry:
	@[ -n "$(REGISTRY)" ] || { echo "error: REGISTRY is not set (e.g. make images REGISTRY=ghcr.io/acme)" >&2; exit 2; }
	@[ -n "$(VERSION)" ] || { echo "error: VERSION is empty and could not be read from pyproject.toml" >&2; exit 2; }

cluster-check-overlay:
	@[ -f manifests/overlays/$(OVERLAY)/kustomization.yaml ] || \
	  { echo "error: OVERLAY=$(OVERLAY): no such overlay (one of: $(OVERLAYS))" >&2; exit 2; }
