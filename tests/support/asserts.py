"""The one error shape, asserted the same way everywhere."""

from __future__ import annotations


def assert_error(r, status: int, code: str | None = None, *, field: str | None = None) -> dict:
    """`r` is an error in the one shape {"error": {"code", "message", "fields"?}} with this
    status (and, when given, this code and a field error naming `field`). Returns the error."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"], body
    assert set(err) <= {"code", "message", "fields"}, body
    if code:
        assert err["code"] == code, body
    if field:
        assert field in [f["field"] for f in err.get("fields") or []], err
    return err
