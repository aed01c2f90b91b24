"""Secrets stay out of the logs; every log line carries a request id (API) or job id (worker)."""

from __future__ import annotations

import re

import pytest

from tests.security.conftest import DB_PASSWORD, PEPPER
from tests.support.specs import TINY_FP, spec
from tests.support.stack import wait_for_job

pytestmark = [pytest.mark.postgres]

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ \S+ \[(?P<rid>[^\]]+)\] ")


def test_secrets_never_logged_and_lines_carry_a_request_id(secure_stack, new_token):
    s = secure_stack
    token = new_token()
    client = s.client(token)
    r = client.get("/v1/jobs", headers={"X-Request-ID": "trace-me-42"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "trace-me-42"
    generated = client.get("/v1/jobs").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)
    forged = "bad id; forged=1"  # not a safe id: replaced by a generated one
    assert re.fullmatch(
        r"[0-9a-f]{16}", client.get("/v1/jobs", headers={"X-Request-ID": forged}).headers["X-Request-ID"]
    )
    s.client("cttv2_wrong").get("/v1/jobs")  # a failed login is logged too, without the token
    done = wait_for_job(
        client, client.post("/v1/jobs", json=spec(TINY_FP, **{"training.epochs": 1})).json()["id"], stack=s
    )
    assert done["status"] == "succeeded"

    api_log = s.api.log()
    worker_log = "\n".join(w.log() for w in s.workers)
    for text in (api_log, worker_log):
        assert DB_PASSWORD not in text
        assert PEPPER not in text
        assert token not in text and "cttv2_wrong" not in text
    access = [line for line in api_log.splitlines() if " cttv2.access " in line]
    assert any("[trace-me-42] GET /v1/jobs 200" in line for line in access), access[-5:]
    assert any(f"[{generated}] GET /v1/jobs 200" in line for line in access)
    assert all(LINE.match(line) and LINE.match(line)["rid"] != "-" for line in access)
    job_lines = [line for line in worker_log.splitlines() if f"job {done['id']}: " in line and LINE.match(line)]
    assert job_lines and all(LINE.match(line)["rid"] == f"job-{done['id']}" for line in job_lines)
