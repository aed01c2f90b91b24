# syntax=docker/dockerfile:1
# The API image: `cttv2 serve` and the one-shot `cttv2 db upgrade`. No torch, no aihwkit
# (`pip install .` is the API install; the engine lives in the worker image). Build from the
# repository root:
#
#   docker build -f docker/api.Dockerfile -t cttv2-api .
#
# Base: python:3.11.14-slim-bookworm, the Debian 12 slim image with the project's Python.

FROM python:3.11.14-slim-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY . /app
# Editable from /app: `cttv2 db upgrade` reads alembic.ini and migrations/ from the source
# tree (service/core/migrate.py). The SDK goes beside the server so the `cttv2` user commands
# work inside the container too.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --editable . ./sdk \
    && if /opt/venv/bin/python -c "import torch" 2>/dev/null; then \
        echo "torch found in the API image: it must stay slim" >&2; exit 1; fi

FROM python:3.11.14-slim-bookworm AS api
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The same tree at the same path: the editable install in /opt/venv points here.
COPY . /app
COPY docker/healthcheck.py /usr/local/bin/cttv2-healthcheck
RUN groupadd --system --gid 10001 cttv2 \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cttv2 --create-home cttv2 \
    && mkdir -p /var/lib/cttv2/artifacts /var/lib/cttv2/data /var/lib/cttv2/weights /var/lib/cttv2/state \
    && chown -R cttv2:cttv2 /var/lib/cttv2 \
    && chmod 0755 /usr/local/bin/cttv2-healthcheck
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CTTV2_STATE_DIR=/var/lib/cttv2/state \
    CTTV2_ARTIFACT_DIR=/var/lib/cttv2/artifacts \
    CTTV2_DATA_DIR=/var/lib/cttv2/data \
    CTTV2_WEIGHTS_DIR=/var/lib/cttv2/weights
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["cttv2-healthcheck", "http", "http://127.0.0.1:8000/readyz"]
CMD ["cttv2", "serve", "--host", "0.0.0.0", "--port", "8000"]
