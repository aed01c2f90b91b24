"""Fuzz every operation of the API from its own OpenAPI spec (schemathesis), authenticated:
valid and invalid requests alike must never get a 5xx, and every error must come in the one
error shape {"error": {"code", "message", "fields"?}}.

Bounded: CTTV2_FUZZ_EXAMPLES examples per operation and generation mode (default 20), which
takes a minute or two here. Raise it for a deeper run."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EXAMPLES = int(os.environ.get("CTTV2_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    # No worker: generated jobs stay queued (and the per-user cap is high enough not to hide
    # the create route behind 429s).
    s = Stack.create("postgres", tmp_path_factory.mktemp("fuzz"), {"CTTV2_MAX_ACTIVE_JOBS_PER_USER": "100000"})
    try:
        s.start_api()
        yield s
    finally:
        s.destroy()


def problem_with(response) -> str | None:
    """Why this response breaks the contract, or None."""
    status = response.status_code
    if status >= 500:
        return f"server error {status}: {response.text[:300]}"
    if status < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"{status} is not JSON: {response.text[:200]}"
    err = body.get("error") if isinstance(body, dict) else None
    if set(body) != {"error"} or not isinstance(err, dict):
        return f"{status} not in the error shape: {body}"
    if not (isinstance(err.get("code"), str) and isinstance(err.get("message"), str) and err["message"]):
        return f"{status} error lacks code/message: {body}"
    if set(err) - {"code", "message", "fields"}:
        return f"{status} error has extra keys: {body}"
    fields = err.get("fields")
    if fields is not None and not (
        isinstance(fields, list) and all(isinstance(f, dict) and set(f) == {"field", "message"} for f in fields)
    ):
        return f"{status} error fields malformed: {body}"
    return None


def test_fuzz_every_operation(fuzz_stack):
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    s = fuzz_stack
    tokens = {"user": s.create_user(), "admin": s.create_user(admin=True)}
    schema = schemathesis.openapi.from_url(s.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # Admin operations last: a generated request may revoke or disable the fuzzing users.
    operations.sort(key=lambda op: op.path.startswith("/v1/admin"))
    assert len(operations) >= 15
    failures: list[str] = []
    sent = 0

    for op in operations:
        token = tokens["admin" if op.path.startswith("/v1/admin") else "user"]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                sent += fuzz_operation(s.url, op, mode, token, failures)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, op.path  # nothing in it can be made invalid

    assert s.api.alive()
    assert sent >= len(operations) * EXAMPLES // 2, f"only {sent} requests reached the server"
    assert not failures, f"{len(failures)} contract violations:\n" + "\n".join(failures[:30])


def fuzz_operation(base_url: str, op, mode, token: str, failures: list[str]) -> int:
    """EXAMPLES generated requests to one operation; appends what broke the contract.
    Returns how many reached the server."""
    import requests
    from hypothesis import HealthCheck, Phase, given, settings

    streams = "text/event-stream" in json.dumps(op.definition.raw, default=str)
    sent = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def fuzz(case) -> None:
        nonlocal sent
        where = f"{op.method.upper()} {op.path} [{mode.value}]"
        try:
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=(5, 10))
        except (
            requests.exceptions.InvalidHeader,
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidJSONError,
            UnicodeError,
            ValueError,
        ):
            return  # the client refused to send it: nothing reached the server
        except requests.exceptions.ReadTimeout:
            if not streams:  # an open event stream is alive, not an error
                failures.append(f"{where}: no answer in 10 s\n    {case.as_curl_command()}")
            return
        sent += 1
        problem = problem_with(response)
        if problem:
            failures.append(f"{where}: {problem}\n    {case.as_curl_command()}")

    fuzz()
    return sent
