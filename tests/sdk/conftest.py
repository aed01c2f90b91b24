from __future__ import annotations

import pytest
from cttv2_client import Client, RetryPolicy

from tests.support.live import shared_stack
from tests.support.specs import TINY_CTTV2
from tests.support.stack import Stack

# Short backoff: the retry tests inject failures and should not sleep for real seconds.
FAST_RETRY = {"backoff_base": 0.05, "backoff_max": 0.2}


@pytest.fixture(scope="session")
def live(request, tmp_path_factory) -> Stack:
    return shared_stack(request, tmp_path_factory)


@pytest.fixture(scope="session")
def token(live) -> str:
    """One user for the SDK tests (creating one is a CLI run: seconds on a busy machine)."""
    return live.create_user()


@pytest.fixture(scope="session")
def client(live, token):
    with Client(live.url, token, retry=RetryPolicy(**FAST_RETRY)) as c:
        yield c


@pytest.fixture(scope="session")
def followed(client):
    """A c-TTv2 job followed live through its event stream from submit to the end: it has
    events, metrics, logs and artifacts. Returns (the final job, its events)."""
    job = client.jobs.submit(TINY_CTTV2)
    events = list(client.jobs.events(job.id))
    return client.jobs.get(job.id), events
