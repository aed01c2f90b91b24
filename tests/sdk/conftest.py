from __future__ import annotations

import pytest
from cttv2_client import Client, RetryPolicy

from tests.support.live import shared_stack
from tests.support.stack import Stack

# Short backoff: the retry tests inject failures and should not sleep for real seconds.
FAST_RETRY = {"backoff_base": 0.05, "backoff_max": 0.2}


@pytest.fixture(scope="session")
def live(request, tmp_path_factory) -> Stack:
    return shared_stack(request, tmp_path_factory)


@pytest.fixture(scope="module")
def token(live) -> str:
    """A fresh user per module: its job list holds only that module's jobs."""
    return live.create_user()


@pytest.fixture(scope="module")
def client(live, token):
    with Client(live.url, token, retry=RetryPolicy(**FAST_RETRY)) as c:
        yield c
