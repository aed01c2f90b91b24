#!/usr/bin/env bash
# Create .venv and install the project (API + worker + dev tools + SDK) at the versions CI
# tested (constraints.txt; `make lock` regenerates it). Idempotent: a stamp file skips the
# install when nothing it depends on changed (pyproject files, constraints.txt).
# CTTV2_CONSTRAINTS=FILE installs against another constraints file; CTTV2_CONSTRAINTS= (empty)
# installs the newest versions pyproject.toml allows (then `make lock` to record them).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "cttv2 needs Python 3.11 (aihwkit 1.1.0 ships a cp311 wheel only)"'

CONSTRAINTS=${CTTV2_CONSTRAINTS-constraints.txt}
if [ -n "$CONSTRAINTS" ] && [ ! -f "$CONSTRAINTS" ]; then
  echo "setup: constraints file $CONSTRAINTS is missing (make lock writes constraints.txt)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi

stamp=".venv/.cttv2-installed-$( { cat pyproject.toml sdk/pyproject.toml 2>/dev/null; echo "constraints: $CONSTRAINTS"; [ -z "$CONSTRAINTS" ] || cat "$CONSTRAINTS"; } | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing cttv2 (torch 2.10 + aihwkit 1.1.0: the first time takes a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  args=(-e ".[worker,dev]")
  [ -f sdk/pyproject.toml ] && args+=(-e ./sdk)
  [ -n "$CONSTRAINTS" ] && args+=(-c "$CONSTRAINTS")
  .venv/bin/python -m pip install --quiet "${args[@]}"
  rm -f .venv/.cttv2-installed-*
  touch "$stamp"
fi
.venv/bin/python -c 'import aihwkit, torch, timm, fastapi, celery' \
  || { echo "setup: the environment is broken; delete .venv and run again" >&2; exit 1; }

# The browser tests (tests/ui) drive Debian's chromium through Playwright: nothing downloads a
# browser at run time (never `playwright install`). Only for the tests (`make test` passes
# --browser): `make demo` does not need a browser.
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  echo "==> installing chromium and chromium-driver (the browser tests, tests/ui)"
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y --no-install-recommends chromium chromium-driver \
      || { as_root apt-get update && as_root apt-get install -y --no-install-recommends chromium chromium-driver; }
  else
    echo "setup: no apt-get; install chromium at /usr/bin/chromium yourself for tests/ui" >&2
  fi
fi
