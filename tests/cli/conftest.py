from __future__ import annotations

import pytest

from tests.support.live import shared_stack
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def live(request, tmp_path_factory) -> Stack:
    return shared_stack(request, tmp_path_factory)
