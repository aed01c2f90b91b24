"""The artifact store: where job files and users' uploaded weights live, behind one interface
with two backends, chosen by CTTV2_ARTIFACT_URL.

- `file:///path` (the default: CTTV2_ARTIFACT_DIR, under CTTV2_STATE_DIR): a folder on this
  host (or a volume every process mounts). Workers write in it directly; the API reads it.
- `s3://bucket/prefix`: any S3-compatible object store (AWS S3, MinIO, Ceph RGW) through
  boto3, configured by boto3's standard settings (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, or an instance role). A worker trains in a
  local scratch folder (CTTV2_STATE_DIR/scratch) and uploads each file once it is complete;
  an S3 PUT (or a completed multipart upload) is atomic, so an object is only ever visible
  whole. The database row, with the sha256, is written after the upload succeeds: a file is
  listed and served only once it is complete in the store.

Keys are the same on both: `jobs/<job id>/<name>` (name as registered, e.g.
`checkpoints/latest.pt`) and `weights/users/<user id>/<name>`. The local backend keeps its
two folders: jobs under ARTIFACT_DIR, weights under WEIGHTS_DIR (server-wide weights files
stay in WEIGHTS_DIR on every host; only users' uploads move to the store).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from service.core.config import Settings, get_settings

CHUNK = 1 << 20
SHA_META = "sha256"  # object metadata (x-amz-meta-sha256): the file's checksum travels with it


def job_key(job_id: int, name: str = "") -> str:
    return f"jobs/{int(job_id)}/{name}"


def weights_key(user_id: int, name: str = "") -> str:
    return f"weights/users/{int(user_id)}/{name}"


class StoreError(OSError):
    """The store cannot be reached or refused an operation (a worker fails the job with
    artifact_store_error; the API answers 503)."""


@dataclass
class Blob:
    """One stored file opened for reading: its size and sha256 are those of the bytes that
    `chunks` yields (a file replaced meanwhile is never mixed with its new version)."""

    size: int
    sha256: str | None
    chunks: Callable[[int, int], Iterator[bytes]]  # (start, length) -> at most CHUNK each
    close: Callable[[], None]


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_writable(folder: Path) -> None:
    """A file written, synced and removed in `folder`: fail early (before any training) when
    it cannot be written (full disk, read-only mount)."""
    probe = folder / f".probe-{uuid.uuid4().hex}"
    with open(probe, "wb") as fh:
        fh.write(b"ok")
        fh.flush()
        os.fsync(fh.fileno())
    probe.unlink()


class LocalStore:
    """Files in ARTIFACT_DIR and WEIGHTS_DIR: the stored file *is* the local file."""

    is_local = True

    def __init__(self, artifact_dir: Path, weights_dir: Path) -> None:
        self.artifact_dir = Path(artifact_dir)
        self.weights_dir = Path(weights_dir)

    def describe(self) -> str:
        return f"file://{self.artifact_dir}"

    def local_path(self, key: str) -> Path:
        """Where this process reads and writes the file: here, the stored file itself."""
        if key.startswith("weights/"):
            return self.weights_dir / key.removeprefix("weights/")
        return self.artifact_dir / key

    def publish(self, key: str, sha256: str) -> None:
        """Already in place: the worker wrote it there (atomically, by rename)."""

    def put(self, key: str, path: Path, sha256: str) -> None:
        """Move a finished temporary file into place (same folder: an atomic rename)."""
        target = self.local_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    def fetch(self, key: str, dest: Path | None = None) -> Path | None:
        """The file to read (here in place: `dest` is only for the S3 store's copies)."""
        path = self.local_path(key)
        return path if path.is_file() else None

    def open(self, key: str) -> Blob | None:
        try:
            fh: BinaryIO = open(self.local_path(key), "rb")  # noqa: SIM115 - closed by close()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        size = os.fstat(fh.fileno()).st_size
        return Blob(
            size=size, sha256=None, chunks=lambda start, length: _file_chunks(fh, start, length), close=fh.close
        )

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.local_path(key).unlink(missing_ok=True)

    def check(self, key_prefix: str) -> None:
        folder = self.local_path(key_prefix)
        folder.mkdir(parents=True, exist_ok=True)
        check_writable(folder)


def _file_chunks(fh: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    try:
        fh.seek(start)
        while length > 0:
            chunk = fh.read(min(CHUNK, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        fh.close()


class S3Store:
    """Objects under s3://bucket/prefix; local copies in a scratch folder of this host."""

    is_local = False

    def __init__(self, bucket: str, prefix: str, scratch_dir: Path) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.scratch_dir = Path(scratch_dir)
        self._client: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def client(self) -> Any:
        # One client per process (thread-safe), made after a fork: a prefork worker or a
        # `serve --workers N` child never shares its parent's connections.
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client(
                        "s3",
                        config=Config(
                            retries={"mode": "standard"},  # AWS_MAX_ATTEMPTS (default 3)
                            connect_timeout=10,
                            read_timeout=60,
                            max_pool_connections=32,
                        ),
                    )
                    self._pid = os.getpid()
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + key

    def local_path(self, key: str) -> Path:
        return self.scratch_dir / key

    def publish(self, key: str, sha256: str) -> None:
        """Upload the local copy of `key` (complete: the engine wrote and renamed it)."""
        self.upload(self.local_path(key), key, sha256, keep=True)

    def put(self, key: str, path: Path, sha256: str) -> None:
        """Store a finished temporary file (an upload received by the API) and remove it."""
        self.upload(path, key, sha256, keep=False)

    def upload(self, path: Path, key: str, sha256: str, keep: bool = True) -> None:
        """One object from a local file: a single PUT, or a multipart upload completed at the
        end (boto3 picks by size); until it completes, readers see the previous version."""
        try:
            from boto3.s3.transfer import TransferConfig

            # 64 MiB parts, 4 at a time: a 2 GB checkpoint is 32 parts, each retried alone.
            config = TransferConfig(multipart_chunksize=64 << 20, max_concurrency=4)
            metadata = {"Metadata": {SHA_META: sha256}}
            self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=metadata, Config=config)
        except Exception as exc:
            raise _store_error("upload", self._key(key), exc) from exc
        if not keep:
            Path(path).unlink(missing_ok=True)

    def fetch(self, key: str, dest: Path | None = None) -> Path | None:
        """Download to `dest` (default: its place in this host's scratch folder), atomically
        (a temporary name, then a rename), checking the bytes against the sha256 stored with
        the object; None when the store has no such object. One streaming GET: it reads one
        version of the object, and on a LAN it is as fast as parallel ranged GETs."""
        dest = dest or self.local_path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            digest = hashlib.sha256()
            with open(tmp, "wb") as fh:
                for chunk in response["Body"].iter_chunks(CHUNK):
                    fh.write(chunk)
                    digest.update(chunk)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            if _is_missing(exc):
                return None
            raise _store_error("download", self._key(key), exc) from exc
        expected = (response.get("Metadata") or {}).get(SHA_META)
        if expected and digest.hexdigest() != expected:
            tmp.unlink(missing_ok=True)
            raise StoreError(
                f"artifact store: {self._key(key)} arrived corrupt (its sha256 differs from the stored one)"
            )
        os.replace(tmp, dest)
        return dest

    def open(self, key: str) -> Blob | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise _store_error("read", self._key(key), exc) from exc
        etag = head["ETag"]
        full = self._key(key)

        def chunks(start: int, length: int) -> Iterator[bytes]:
            if length <= 0:
                return
            # IfMatch: the version whose size (and sha256) the headers carry, or an error
            # (the response is cut) rather than the bytes of a newer upload.
            body = self.client.get_object(
                Bucket=self.bucket, Key=full, Range=f"bytes={start}-{start + length - 1}", IfMatch=etag
            )["Body"]
            try:
                yield from body.iter_chunks(CHUNK)
            finally:
                body.close()

        return Blob(
            size=int(head["ContentLength"]),
            sha256=(head.get("Metadata") or {}).get(SHA_META),
            chunks=chunks,
            close=lambda: None,
        )

    def delete(self, keys: Iterable[str]) -> None:
        self._delete_full([self._key(k) for k in keys])

    def delete_prefix(self, key_prefix: str) -> int:
        """Delete every object under a key prefix (e.g. a job's folder); returns their bytes."""
        objects = list(self.list(key_prefix))
        self._delete_full([self._key(o.key) for o in objects])
        return sum(o.size for o in objects)

    def _delete_full(self, full_keys: list[str]) -> None:
        for i in range(0, len(full_keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = full_keys[i : i + 1000]
            if not batch:
                continue
            try:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except Exception as exc:
                raise _store_error("delete", batch[0], exc) from exc

    def list(self, key_prefix: str) -> Iterator[StoredObject]:
        """Every object under a key prefix (keys relative to the store's prefix)."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(key_prefix)):
                for obj in page.get("Contents", []):
                    yield StoredObject(
                        key=obj["Key"][len(self.prefix) :],
                        size=int(obj["Size"]),
                        modified=obj["LastModified"].astimezone(UTC),
                    )
        except Exception as exc:
            raise _store_error("list", self._key(key_prefix), exc) from exc

    def abort_stale_uploads(self, before: datetime) -> int:
        """Abort multipart uploads started before `before` (a worker killed mid-upload leaves
        its parts behind; nothing else would free them). Returns how many."""
        n = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for up in page.get("Uploads", []):
                if up["Initiated"].astimezone(UTC) < before:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                    n += 1
        return n

    def check(self, key_prefix: str) -> None:
        """A write and a delete under the prefix: the store is reachable and writable."""
        key = self._key(f"{key_prefix}.probe-{uuid.uuid4().hex}")
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"ok")
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _store_error("write", key, exc) from exc

    def clear_scratch(self, key_prefix: str) -> None:
        shutil.rmtree(self.local_path(key_prefix), ignore_errors=True)


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def _store_error(what: str, key: str, exc: Exception) -> StoreError:
    response = getattr(exc, "response", None) or {}
    detail = (response.get("Error") or {}).get("Message") or (str(exc).splitlines() or [type(exc).__name__])[0]
    return StoreError(f"artifact store: cannot {what} {key}: {detail}")


ArtifactStore = LocalStore | S3Store

_stores: dict[tuple[str, str, str], ArtifactStore] = {}
_stores_lock = threading.Lock()


def get_store(settings: Settings | None = None) -> ArtifactStore:
    """The store the settings name (one instance per configuration and process)."""
    settings = settings or get_settings()
    key = (settings.artifact_url, str(settings.artifact_dir), str(settings.state_dir))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _make(settings)
            _stores[key] = store
        return store


def _make(settings: Settings) -> ArtifactStore:
    if settings.artifact_backend == "s3":
        bucket, prefix = settings.s3_location
        return S3Store(bucket, prefix, settings.scratch_dir)
    return LocalStore(settings.artifact_dir, settings.weights_dir)
