from __future__ import annotations

import os

import pytest

from tests.support.stack import Stack, running_stack

# One thread per test process: the suite runs on 2 cores, beside the workers it starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def stack(request, tmp_path_factory):
    """API + one worker, on the embedded default and on PostgreSQL + Redis."""
    with running_stack(request.param, tmp_path_factory.mktemp(f"stack-{request.param}")) as s:
        yield s


@pytest.fixture
def make_stack(tmp_path_factory):
    """Build stacks by hand (fault tests start and kill processes themselves)."""
    made: list[Stack] = []

    def make(backend: str, extra_env: dict[str, str] | None = None) -> Stack:
        s = Stack.create(backend, tmp_path_factory.mktemp(f"stack-{backend}"), extra_env)
        made.append(s)
        return s

    yield make
    for s in made:
        s.destroy()
