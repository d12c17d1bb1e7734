# syntax=docker/dockerfile:1
# StreamGuard CPU image: ingest, build_graphs, preflight, aggregate (and the KFP v2 component
# executor, which needs kfp inside the image). Build from the repository root:
#   docker build -f images/cpu.Dockerfile -t $REGISTRY/streamguard-cpu:$VERSION .
# (mk/cluster.mk `make images` does this). The Python packages are exactly images/locks/cpu.txt,
# which is also what `make test` installs, so CI tests what this image runs.
FROM python:3.11.14-slim-bookworm

ARG VERSION=0.0.0
LABEL org.opencontainers.image.title="streamguard-cpu" \
      org.opencontainers.image.description="StreamGuard pipeline components (CPU)" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/streamguard \
    HF_HOME=/tmp/huggingface \
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor \
    MPLCONFIGDIR=/tmp/matplotlib

# Fixed numeric ids so that Kubernetes' runAsNonRoot can verify the user.
RUN groupadd --system --gid 10001 streamguard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/streamguard --create-home \
      --shell /usr/sbin/nologin streamguard

# Locked dependencies first (a layer that changes only with the lock). torch is the +cpu build,
# served by the PyTorch CPU index; everything is pinned, so no resolution happens here.
COPY images/locks/cpu.txt /tmp/requirements.txt
RUN pip install --no-deps --extra-index-url https://download.pytorch.org/whl/cpu \
      -r /tmp/requirements.txt \
 && pip check \
 && rm /tmp/requirements.txt

# StreamGuard itself, without dependencies (all of them are in the lock).
WORKDIR /opt/streamguard
COPY pyproject.toml ./
COPY streamguard/ ./streamguard/
RUN pip install --no-deps --no-build-isolation . \
 && rm -rf build ./*.egg-info \
 && python -c "import streamguard, kfp, torch; print('streamguard', torch.__version__)"

USER 10001:10001
WORKDIR /home/streamguard
CMD ["streamguard", "--help"]
