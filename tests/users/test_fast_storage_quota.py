"""The per-user storage quota (CTTV2_MAX_STORAGE_MB_PER_USER), in process: what counts (the
artifacts of the user's jobs + their uploaded weights, nobody else's), GET /v1/users/me, an
upload that would pass the quota (507, nothing stored: no file, no row), and a submit while
the quota is used up (507, no job); the SDK raises that 507 at once."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from cttv2_client import Client, ServerError

from service.users.storage import StorageUse
from tests.support.asserts import assert_error
from tests.support.specs import TINY_FP, spec

pytestmark = pytest.mark.fast

MB = 1 << 20
CODE = "storage_quota_exceeded"


def upload(client, content: bytes, name: str = "w.safetensors"):
    return client.post("/v1/weights", files={"file": (name, content)}, data={"arch": "swin_micro", "name": name})


def add_artifact(api, job_id: int, name: str, size: int) -> None:
    """An artifact row as a worker registers one (the file itself does not matter here)."""
    api.sql(
        "INSERT INTO artifacts (job_id, name, kind, size, sha256, created_at, updated_at) "
        "VALUES (:j, :n, 'plot', :s, :h, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        j=job_id,
        n=name,
        s=size,
        h="0" * 64,
    )


def finished_job(api, client) -> int:
    r = client.post("/v1/jobs", json=spec(TINY_FP, name="quota"))
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    api.sql("UPDATE jobs SET status = 'succeeded' WHERE id = :j", j=job_id)  # as if it had run
    return job_id


def stored(api, client) -> tuple[list[str], list[tuple]]:
    """What the user has under the weights dir (every file, temporary ones too) and in the table."""
    folder = Path(api.backend.env["CTTV2_WEIGHTS_DIR"]) / "users" / str(client.user_id)
    files = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    rows = api.sql("SELECT name, size FROM weights_files WHERE user_id = :u ORDER BY name", u=client.user_id)
    return files, rows


def me_storage(client) -> tuple[int, int]:
    body = client.get("/v1/users/me").json()
    return body["usage"]["storage_bytes"], body["limits"]["max_storage_bytes"]


def test_me_counts_the_users_artifacts_and_uploaded_weights(api):
    alice, bob = api.user(), api.user()
    assert me_storage(alice) == (0, 100_000 * MB)
    assert upload(alice, b"w" * 1000).status_code == 201
    job = finished_job(api, alice)
    add_artifact(api, job, "curves.png", 2500)
    add_artifact(api, job, "checkpoints/latest.pt", 40_000)
    add_artifact(api, finished_job(api, bob), "curves.png", 7777)  # bob's: not alice's
    assert upload(bob, b"b" * 300).status_code == 201
    assert me_storage(alice) == (1000 + 2500 + 40_000, 100_000 * MB)
    assert me_storage(bob) == (7777 + 300, 100_000 * MB)
    with api.settings(max_storage_mb_per_user=2):
        assert me_storage(alice) == (43_500, 2 * MB)


def test_an_upload_over_the_quota_is_a_507_and_stores_nothing(api):
    alice = api.user()
    with api.settings(max_storage_mb_per_user=1):
        assert upload(alice, b"a" * (600 << 10), "first.pt").status_code == 201  # 0.6 of 1 MB
        before = stored(api, alice)
        assert before == (["first.pt"], [("first.pt", 600 << 10)])

        # Over the room left as it streams in: refused once past it; the message has the numbers.
        err = assert_error(upload(alice, b"b" * (600 << 10), "second.pt"), 507, CODE)
        assert "you use 0.6 MB of your 1.0 MB storage quota" in err["message"], err
        assert "this upload is 0.6 MB" in err["message"] and "CTTV2_MAX_STORAGE_MB_PER_USER" in err["message"]
        assert stored(api, alice) == before

        # Far larger than the room (and than the quota): the whole size is still told.
        err = assert_error(upload(alice, b"c" * (3 * MB), "third.pt"), 507, CODE)
        assert "this upload is 3.0 MB" in err["message"], err
        assert stored(api, alice) == before

        # Exactly the room left fits; then not a byte more.
        room = MB - (600 << 10)
        assert upload(alice, b"d" * room, "fits.pt").status_code == 201
        err = assert_error(upload(alice, b"e", "byte.pt"), 507, CODE)
        assert "you use 1.0 MB of your 1.0 MB" in err["message"], err
        assert [name for name, _ in stored(api, alice)[1]] == ["first.pt", "fits.pt"]
        assert me_storage(alice) == (MB, MB)


def test_an_upload_is_checked_again_before_its_row_is_committed(api, monkeypatch):
    """The usage read before the file streams in may be stale (another upload of the user's
    finished meanwhile): the check before the commit refuses it, and no file is left."""
    from service.weights import router

    alice = api.user()
    with api.settings(max_storage_mb_per_user=1):
        assert upload(alice, b"a" * (800 << 10), "first.pt").status_code == 201
        before = stored(api, alice)
        stale = SimpleNamespace(usage=lambda session, settings, user_id: StorageUse(used=0, quota=MB))
        monkeypatch.setattr(router, "storage", stale)
        err = assert_error(upload(alice, b"b" * (500 << 10), "second.pt"), 507, CODE)
        assert "you use 0.8 MB of your 1.0 MB storage quota" in err["message"], err
        assert "this upload is 0.5 MB" in err["message"], err
        assert stored(api, alice) == before


def test_a_submit_while_the_quota_is_used_up_is_a_507(api):
    alice, bob = api.user(), api.user()
    add_artifact(api, finished_job(api, alice), "weights.safetensors", 3 * MB // 2)
    jobs_before = api.sql("SELECT count(*) FROM jobs WHERE user_id = :u", u=alice.user_id)
    with api.settings(max_storage_mb_per_user=1):
        err = assert_error(alice.post("/v1/jobs", json=TINY_FP), 507, CODE)
        assert err["message"] == (
            "storage quota exceeded: you use 1.5 MB of your 1.0 MB storage quota (CTTV2_MAX_STORAGE_MB_PER_USER); "
            "delete jobs or weights you no longer need"
        )
        assert api.sql("SELECT count(*) FROM jobs WHERE user_id = :u", u=alice.user_id) == jobs_before

        # The SDK raises it at once (its submit is retried on 429s and 503s, not on a quota).
        with Client("http://testserver", alice.token, http_client=api.client(alice.token)) as client:
            client._transport.sleep = lambda s: pytest.fail("a quota refusal was retried")
            with pytest.raises(ServerError) as caught:
                client.jobs.submit(spec(TINY_FP, name="sdk"))
        assert (caught.value.status_code, caught.value.code) == (507, CODE)

        r = bob.post("/v1/jobs", json=TINY_FP)  # another user, with room: accepted
        assert r.status_code == 201, r.text
        bob.post(f"/v1/jobs/{r.json()['id']}/cancel")
    r = alice.post("/v1/jobs", json=TINY_FP)  # the default quota: room again
    assert r.status_code == 201, r.text
    alice.post(f"/v1/jobs/{r.json()['id']}/cancel")
