from __future__ import annotations

import pytest

from tests.support.asserts import assert_error as assert_one_error
from tests.support.stack import running_stack

# A 1 MB upload limit (the tiny swin_micro state dict is ~0.4 MB) and 1 s keep-alives, so the
# limit and the keep-alive comments can be seen without big files or long waits.
RESULTS_ENV = {"CTTV2_MAX_UPLOAD_MB": "1", "CTTV2_SSE_KEEPALIVE_S": "1", "CTTV2_SSE_POLL_S": "0.2"}


@pytest.fixture(scope="package", params=["embedded", "postgres"])
def rstack(request, tmp_path_factory):
    """API + one worker per backend, shared by every test in tests/results."""
    with running_stack(request.param, tmp_path_factory.mktemp(f"results-{request.param}"), RESULTS_ENV) as s:
        yield s


@pytest.fixture(scope="package")
def alice(rstack):
    return rstack.client(rstack.create_user())


@pytest.fixture(scope="package")
def bob(rstack):
    return rstack.client(rstack.create_user())


def assert_error(r, status: int, field: str | None = None) -> dict:
    """The one error shape, with the status and (when given) the field named."""
    return assert_one_error(r, status, field=field)
