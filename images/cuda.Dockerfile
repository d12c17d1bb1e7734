# syntax=docker/dockerfile:1
# StreamGuard CUDA image: train_transformer, train_gnn, train_fusion on NVIDIA GPUs.
# Build from the repository root:
#   docker build -f images/cuda.Dockerfile -t $REGISTRY/streamguard-cuda:$VERSION .
# The Python packages are exactly images/locks/cuda.txt: the same pins as cpu.txt except torch
# (a CUDA build) and the CUDA wheels it depends on.
#
# The CUDA user-space libraries come from those wheels; the base image's CUDA major version must
# match them (torch 2.13.0 on PyPI is built for CUDA 13.0; see docs/cluster.md for a CUDA 12 build).
# Python 3.11 is not an Ubuntu 24.04 package, so uv installs a standalone CPython 3.11.14 (the same
# patch release as the CPU image's python:3.11.14).
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM nvidia/cuda:13.0.2-runtime-ubuntu24.04

ARG VERSION=0.0.0
LABEL org.opencontainers.image.title="streamguard-cuda" \
      org.opencontainers.image.description="StreamGuard training components (CUDA)" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/streamguard \
    HF_HOME=/tmp/huggingface \
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor \
    TRITON_CACHE_DIR=/tmp/triton \
    MPLCONFIGDIR=/tmp/matplotlib

COPY --from=uv /uv /usr/local/bin/uv

# Ubuntu 24.04 ships a user "ubuntu" with uid 1000; ours has a fixed uid of its own.
RUN groupadd --system --gid 10001 streamguard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/streamguard --create-home \
      --shell /usr/sbin/nologin streamguard

RUN uv python install 3.11.14 \
 && uv venv --python 3.11.14 /opt/venv

COPY images/locks/cuda.txt /tmp/requirements.txt
RUN uv pip install --no-deps -r /tmp/requirements.txt \
 && uv pip check \
 && rm /tmp/requirements.txt

WORKDIR /opt/streamguard
COPY pyproject.toml ./
COPY streamguard/ ./streamguard/
RUN uv pip install --no-deps --no-build-isolation . \
 && rm -rf build ./*.egg-info \
 && python -c "import streamguard, kfp, torch; print('streamguard', torch.__version__, torch.version.cuda)"

USER 10001:10001
WORKDIR /home/streamguard
CMD ["streamguard", "--help"]
