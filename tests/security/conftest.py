from __future__ import annotations

import uuid

import pytest

from tests.support.stack import Stack, running_stack

# Tight limits, so each can be crossed with a small request.
LIMITS = {
    "CTTV2_MAX_BODY_BYTES": "65536",
    "CTTV2_MAX_UPLOAD_MB": "1",
    "CTTV2_MAX_EPOCHS": "50",
    "CTTV2_MAX_IMG_SIZE": "64",
    "CTTV2_MAX_TRAIN_SAMPLES": "2000",
    "CTTV2_MAX_SWEEP_JOBS": "6",
    "CTTV2_MAX_ACTIVE_JOBS_PER_USER": "3",
}
# A database password (PostgreSQL here trusts local connections, so any password works) and a
# token pepper that must never show up in a log.
DB_PASSWORD = f"pw-{uuid.uuid4().hex}"
PEPPER = f"pepper-{uuid.uuid4().hex}"


@pytest.fixture(scope="package")
def secure_stack(tmp_path_factory):
    def with_password(s: Stack) -> None:
        s.env["CTTV2_DATABASE_URL"] = s.env["CTTV2_DATABASE_URL"].replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
        assert DB_PASSWORD in s.env["CTTV2_DATABASE_URL"]

    with running_stack(
        "postgres", tmp_path_factory.mktemp("security"), {**LIMITS, "CTTV2_TOKEN_PEPPER": PEPPER}, prepare=with_password
    ) as s:
        yield s


@pytest.fixture(scope="package")
def admin(secure_stack):
    """An admin's client (the first admin comes from the CLI; the rest from the admin API,
    which is much quicker than a CLI process per user)."""
    return secure_stack.client(secure_stack.create_user(admin=True))


@pytest.fixture(scope="package")
def new_token(admin):
    """new_token(is_admin=False) -> a fresh user's token."""

    def make(is_admin: bool = False) -> str:
        r = admin.post("/v1/admin/users", json={"name": f"u{uuid.uuid4().hex[:10]}", "is_admin": is_admin})
        assert r.status_code == 201, r.text
        return r.json()["token"]["token"]

    return make
