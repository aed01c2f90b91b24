"""The artifact store's one interface on both backends (service.artifacts.store): a folder,
and an S3 bucket on a real S3-speaking server (moto's standalone server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.artifacts.store import LocalStore, S3Store, StoreError, job_key, weights_key
from tests.support.s3 import s3_server


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3")
    with s3_server(root) as server:
        saved = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)  # boto3 reads its standard settings, as a worker does
        try:
            yield server
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, s3):
    if request.param == "file":
        return LocalStore(tmp_path / "artifacts", tmp_path / "weights")
    return S3Store(s3.bucket, f"p-{uuid.uuid4().hex[:6]}/deep", tmp_path / "scratch")


def write_local(store, key: str, data: bytes) -> str:
    """As the worker does: the file in its local place, then published."""
    path = store.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store.publish(key, sha)
    return sha


def read_all(blob) -> bytes:
    return b"".join(blob.chunks(0, blob.size))


def test_publish_open_range_fetch_delete(store, tmp_path):
    data = os.urandom(3 * (1 << 20) + 123)  # several chunks
    sha = write_local(store, job_key(7, "checkpoints/latest.pt"), data)
    if isinstance(store, S3Store):
        store.clear_scratch(job_key(7))  # a host that never had the file

    blob = store.open(job_key(7, "checkpoints/latest.pt"))
    assert blob is not None and blob.size == len(data)
    assert read_all(blob) == data
    if isinstance(store, S3Store):
        assert blob.sha256 == sha  # kept with the object
    middle = store.open(job_key(7, "checkpoints/latest.pt"))
    assert b"".join(middle.chunks(1_000_000, 2_500_000)) == data[1_000_000:3_500_000]
    middle.close()

    fetched = store.fetch(job_key(7, "checkpoints/latest.pt"))
    assert fetched is not None and fetched.read_bytes() == data
    elsewhere = tmp_path / "in" / "copy.pt"
    got = store.fetch(job_key(7, "checkpoints/latest.pt"), elsewhere)
    assert got is not None and got.read_bytes() == data

    assert store.open(job_key(7, "nothing")) is None
    assert store.fetch(job_key(8, "checkpoints/latest.pt")) is None

    store.delete([job_key(7, "checkpoints/latest.pt")])
    assert store.open(job_key(7, "checkpoints/latest.pt")) is None


def test_put_moves_a_received_upload_into_place(store, tmp_path):
    tmp = (tmp_path / "received.part") if isinstance(store, S3Store) else store.local_path(weights_key(3, ".up.part"))
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b"weights" * 1000)
    store.put(weights_key(3, "mine.safetensors"), tmp, hashlib.sha256(b"weights" * 1000).hexdigest())
    assert not tmp.exists()
    blob = store.open(weights_key(3, "mine.safetensors"))
    assert blob is not None and read_all(blob) == b"weights" * 1000


def test_s3_prefix_listing_and_deleting_one_jobs_objects(s3, tmp_path):
    store = S3Store(s3.bucket, f"p-{uuid.uuid4().hex[:6]}", tmp_path / "scratch")
    for job_id, name in [(1, "a"), (1, "checkpoints/b"), (12, "a")]:
        write_local(store, job_key(job_id, name), name.encode())
    assert sorted(o.key for o in store.list("jobs/1/")) == ["jobs/1/a", "jobs/1/checkpoints/b"]
    assert store.delete_prefix(job_key(1)) == len(b"a") + len(b"checkpoints/b")
    assert [o.key for o in store.list("jobs/")] == ["jobs/12/a"]  # jobs/12 is not under jobs/1/
    assert set(s3.keys(store.prefix)) == {f"{store.prefix}jobs/12/a"}


def test_s3_replaced_mid_download_is_cut_not_mixed(s3, tmp_path):
    """A reader holds the version it opened: when the worker replaces latest.pt meanwhile,
    the rest of the download fails (If-Match) instead of sending the new version's bytes."""
    store = S3Store(s3.bucket, f"p-{uuid.uuid4().hex[:6]}", tmp_path / "scratch")
    write_local(store, job_key(1, "latest.pt"), b"A" * 5000)
    blob = store.open(job_key(1, "latest.pt"))
    assert blob is not None
    write_local(store, job_key(1, "latest.pt"), b"B" * 5000)
    with pytest.raises(Exception, match="PreconditionFailed|412"):
        read_all(blob)
    fresh = store.open(job_key(1, "latest.pt"))
    assert fresh is not None and read_all(fresh) == b"B" * 5000


def test_s3_unfinished_multipart_upload_is_invisible_and_swept(s3, tmp_path):
    """An upload cut off midway (a killed worker) never shows as the object; the previous
    version stays whole, and the sweep aborts the parts left behind."""
    store = S3Store(s3.bucket, f"p-{uuid.uuid4().hex[:6]}", tmp_path / "scratch")
    write_local(store, job_key(1, "latest.pt"), b"old")
    client = s3.client()
    key = f"{store.prefix}jobs/1/latest.pt"
    up = client.create_multipart_upload(Bucket=s3.bucket, Key=key)
    client.upload_part(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=b"N" * (5 << 20))
    blob = store.open(job_key(1, "latest.pt"))
    assert blob is not None and read_all(blob) == b"old"
    # (moto reports every upload as initiated in 2010, so "too young to abort" is not
    # observable here: the cutoff comparison is the sweep's grace period, as for objects.)
    assert store.abort_stale_uploads(datetime.now(UTC) + timedelta(seconds=5)) == 1
    assert not client.list_multipart_uploads(Bucket=s3.bucket, Prefix=store.prefix).get("Uploads")


def test_s3_unreachable_is_a_store_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = S3Store("cttv2-none", "", tmp_path / "scratch")
    with pytest.raises(StoreError, match="artifact store: cannot write"):
        store.check(job_key(1))


def test_s3_fetch_refuses_bytes_that_do_not_match_the_stored_sha256(s3, tmp_path):
    """A worker resuming elsewhere checks what it downloaded against the checksum the
    uploader stored with the object; a mismatch is an error, and no file is left."""
    store = S3Store(s3.bucket, f"p-{uuid.uuid4().hex[:6]}", tmp_path / "scratch")
    key = f"{store.prefix}jobs/1/checkpoints/latest.pt"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"bytes", Metadata={"sha256": "0" * 64})
    with pytest.raises(StoreError, match="corrupt"):
        store.fetch(job_key(1, "checkpoints/latest.pt"))
    assert not list((tmp_path / "scratch").rglob("*latest*"))
