"""One live stack (API + worker) shared by the SDK, CLI and examples tests of a session: the
client side does not depend on the backend, so one stack instead of one per module and backend
saves minutes. The postgres backend is used: its broker hands jobs over fastest."""

from __future__ import annotations

import pytest

from tests.support.stack import Stack

_shared: dict[str, Stack] = {}


def shared_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, backend: str = "postgres"
) -> Stack:
    if backend not in _shared:
        stack = Stack.create(backend, tmp_path_factory.mktemp(f"client-stack-{backend}"))
        try:
            stack.start_api()
            stack.start_worker()
        except BaseException:
            stack.destroy()
            raise
        request.config.add_cleanup(stack.destroy)
        _shared[backend] = stack
    return _shared[backend]
