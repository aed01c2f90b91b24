# syntax=docker/dockerfile:1
# The worker image: one Celery worker process (`cttv2 worker`) with the training engine and an
# aihwkit compiled with CUDA. Build from the repository root:
#
#   docker build -f docker/worker.Dockerfile -t cttv2-worker .
#
# Base images. Both tags exist on Docker Hub (the upstream aihwkit CUDA.Dockerfile names
# CUDA 12.2.2 on Ubuntu 24.04, which NVIDIA never published, so it cannot be copied as is):
#   build:   nvidia/cuda:12.8.1-devel-ubuntu24.04    nvcc 12.8: the CUDA release that the
#            torch 2.10.0 wheel on PyPI is built with (torch.version.cuda == "12.8"), so the
#            extension and torch load the same libcublas/libcurand major version.
#   runtime: nvidia/cuda:12.8.1-runtime-ubuntu24.04  the matching runtime, no compiler.
# CUDA 12.8 needs an NVIDIA driver >= 570 on the host.
#
# Python 3.11 (the project's requires-python) comes from uv's managed CPython builds: Ubuntu
# 24.04 ships only 3.12.

# Versions that must move together: aihwkit is compiled against this exact torch.
ARG PYTHON_VERSION=3.11.14
ARG TORCH_VERSION=2.10.0
ARG TORCHVISION_VERSION=0.25.0
ARG AIHWKIT_VERSION=1.1.0
# Ampere (80, 86), Ada (89), Hopper (90). aihwkit's default list stops at 89.
ARG CUDA_ARCHITECTURES="80;86;89;90"

FROM ghcr.io/astral-sh/uv:0.9.26 AS uv

# ---------------------------------------------------------------------------------------------
# Stage 1: compile aihwkit with CUDA against the pinned torch.
FROM nvidia/cuda:12.8.1-devel-ubuntu24.04 AS aihwkit-build
ARG PYTHON_VERSION
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ARG AIHWKIT_VERSION
ARG CUDA_ARCHITECTURES
ARG BUILD_JOBS=8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_LINK_MODE=copy
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential ca-certificates libopenblas-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
# The build runs without isolation, so the build environment holds the exact torch plus
# aihwkit's build requirements (setuptools >= 77 for its PEP 639 metadata, mypy for the
# stubgen step its CMake runs after linking).
RUN --mount=type=cache,target=/root/.cache/uv \
    uv python install "${PYTHON_VERSION}" \
    && uv venv --seed --python "${PYTHON_VERSION}" /opt/build-venv \
    && uv pip install --python /opt/build-venv/bin/python \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
        "setuptools>=77" wheel "scikit-build>=0.18.1" "pybind11>=3.0.1" "cmake>=3.18" ninja mypy \
    && /opt/build-venv/bin/python -c \
        "import torch; assert torch.version.cuda == '12.8', torch.version.cuda"
COPY scripts/build-aihwkit-cuda.sh /usr/local/bin/build-aihwkit-cuda.sh
RUN build-aihwkit-cuda.sh --python /opt/build-venv/bin/python --version "${AIHWKIT_VERSION}" \
        --archs "${CUDA_ARCHITECTURES}" --jobs "${BUILD_JOBS}" \
        --wheel-dir /wheels --work-dir /tmp/aihwkit-build \
    && rm -rf /tmp/aihwkit-build

# ---------------------------------------------------------------------------------------------
# Stage 2: the worker. CUDA runtime + Python venv + the wheel from stage 1 + this project.
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS worker
ARG PYTHON_VERSION
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ARG AIHWKIT_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_LINK_MODE=copy
# libopenblas0-pthread and libgomp1: what the compiled simulator links besides CUDA and torch.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1 libopenblas0-pthread \
    && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
COPY --from=aihwkit-build /wheels /wheels
WORKDIR /app
COPY . /app
# One resolve for everything: the local CUDA wheel is the aihwkit (the override lets
# --build-arg AIHWKIT_VERSION=1.2.0 replace the project's 1.1.0 pin in this image only), and the
# constraints keep torch at the version the wheel was compiled against. The project is
# installed editable from /app: `cttv2 db upgrade` reads alembic.ini and migrations/ from the
# source tree (service/core/migrate.py), and serve/worker migrate on start too.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv python install "${PYTHON_VERSION}" \
    && uv venv --python "${PYTHON_VERSION}" /opt/venv \
    && printf 'torch==%s\ntorchvision==%s\n' "${TORCH_VERSION}" "${TORCHVISION_VERSION}" \
        > /tmp/constraints.txt \
    && printf 'aihwkit==%s\n' "${AIHWKIT_VERSION}" > /tmp/overrides.txt \
    && uv pip install --python /opt/venv/bin/python \
        --constraint /tmp/constraints.txt --override /tmp/overrides.txt \
        /wheels/aihwkit-"${AIHWKIT_VERSION}"-*.whl --editable ".[worker]" \
    && rm -rf /wheels /tmp/constraints.txt /tmp/overrides.txt
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    CTTV2_STATE_DIR=/var/lib/cttv2/state \
    CTTV2_ARTIFACT_DIR=/var/lib/cttv2/artifacts \
    CTTV2_DATA_DIR=/var/lib/cttv2/data \
    CTTV2_WEIGHTS_DIR=/var/lib/cttv2/weights \
    CTTV2_DEVICE=auto
# Fail the build, not the first GPU job, if the CPU-only wheel slipped in or torch moved.
RUN python docker/check_worker_image.py --torch "${TORCH_VERSION}" --aihwkit "${AIHWKIT_VERSION}"
COPY docker/healthcheck.py /usr/local/bin/cttv2-healthcheck
RUN groupadd --system --gid 10001 cttv2 \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cttv2 --create-home cttv2 \
    && mkdir -p /var/lib/cttv2/artifacts /var/lib/cttv2/data /var/lib/cttv2/weights /var/lib/cttv2/state \
    && chown -R cttv2:cttv2 /var/lib/cttv2 \
    && chmod 0755 /usr/local/bin/cttv2-healthcheck
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["cttv2-healthcheck", "worker"]
CMD ["cttv2", "worker"]
