from __future__ import annotations

import pytest

from tests.support.stack import Stack

# A 1 MB upload limit (the tiny swin_micro state dict is ~0.4 MB) and 1 s keep-alives, so the
# limit and the keep-alive comments can be seen without big files or long waits.
RESULTS_ENV = {"CTTV2_MAX_UPLOAD_MB": "1", "CTTV2_SSE_KEEPALIVE_S": "1", "CTTV2_SSE_POLL_S": "0.2"}


@pytest.fixture(scope="package", params=["embedded", "postgres"])
def rstack(request, tmp_path_factory):
    """API + one worker per backend, shared by every test in tests/results."""
    s = Stack.create(request.param, tmp_path_factory.mktemp(f"results-{request.param}"), RESULTS_ENV)
    try:
        s.start_api()
        s.start_worker()
        yield s
    finally:
        s.destroy()


@pytest.fixture(scope="package")
def alice(rstack):
    return rstack.client(rstack.create_user())


@pytest.fixture(scope="package")
def bob(rstack):
    return rstack.client(rstack.create_user())


def assert_error(r, status: int, field: str | None = None) -> dict:
    """The one error shape, with the status and (when given) the field named."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    if field:
        assert field in [f["field"] for f in err.get("fields") or []], err
    return err
