"""client.artifacts: list a job's files and download them safely.

A download streams into `<target>.part` beside the target, resumes from that file's size with
a Range request after a cut connection (or in a later call), checks the sha256 the server
publishes, and only then renames the file into place: the target is either the whole verified
file or absent.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

from cttv2_client.calls import Call
from cttv2_client.errors import APIConnectionError, ChecksumMismatch, CTTV2Error
from cttv2_client.models import Artifact
from cttv2_client.transport import RetryPolicy

if TYPE_CHECKING:
    from cttv2_client.client import Client

DOWNLOAD_TIMEOUT = httpx.Timeout(10.0, read=120.0)
CHUNK = 1 << 20


class Artifacts:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, job_id: int) -> list[Artifact]:
        return self._client.call(list_call(job_id))

    def download(self, job_id: int, name: str, path: str | os.PathLike[str] | None = None) -> Path:
        """Save artifact `name` (e.g. "weights.safetensors", "checkpoints/best.pt") of a job.

        path: a file, or a directory to save into (an existing one, or one written with a
        trailing "/"; default: the current directory), under the artifact's base name. Returns the saved file's path. Raises
        ChecksumMismatch (and keeps nothing) when the bytes do not match the server's sha256.
        """
        d = Download(job_id, name, path, self._client.retry)
        while True:
            headers = d.start()
            try:
                with self._client.stream("GET", d.url, **d.request_options(headers)) as r:
                    step = d.begin(r)
                    if step == "again":
                        continue
                    if step == "write":
                        with d.open() as fh:
                            for chunk in r.iter_bytes():  # as received: nothing buffered is lost on a cut
                                d.write(fh, chunk)
                            d.flush(fh)
                break
            except (httpx.TransportError, APIConnectionError) as exc:
                self._client.sleep(d.broke(exc))
        if d.expected is None:
            d.expected = next((a.sha256 for a in self.list(job_id) if a.name == name), None)
        return d.finish()


def list_call(job_id: int) -> Call[list[Artifact]]:
    def parse(r: httpx.Response) -> list[Artifact]:
        return [Artifact.model_validate(a) for a in r.json().get("items", [])]

    return Call("GET", f"/v1/jobs/{int(job_id)}/artifacts", parse)


class Download:
    """One download's state and decisions (shared by the sync and async clients): the .part
    file, the Range to resume from, the running sha256, and when to give up."""

    def __init__(self, job_id: int, name: str, path: str | os.PathLike[str] | None, retry: RetryPolicy) -> None:
        self.name = name
        self.target = _target_path(name, path)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.part = self.target.with_name(self.target.name + ".part")
        self.url = f"/v1/jobs/{int(job_id)}/artifacts/{quote(name, safe='/')}"
        self.retry = retry
        self.expected: str | None = None
        self.hasher, self.hashed = hashlib.sha256(), 0
        self.failures = 0
        self.offset = 0
        self.mode = "wb"

    def start(self) -> dict[str, str]:
        """The headers of the next try: a Range from the .part file's size."""
        self.offset = self.part.stat().st_size if self.part.exists() else 0
        if self.hashed != self.offset:  # a .part left by an earlier call: hash what it holds
            self.hasher, self.hashed = _hash_file(self.part), self.offset
        headers = {"Accept": "*/*"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
            if self.expected:  # only resume onto the same version of the file
                headers["If-Range"] = f'"{self.expected}"'
        return headers

    @staticmethod
    def request_options(headers: dict[str, str]) -> dict[str, Any]:
        return {"headers": headers, "timeout": DOWNLOAD_TIMEOUT, "accept_statuses": (416,)}

    def begin(self, r: httpx.Response) -> Literal["again", "done", "write"]:
        """Read a response's head: "write" its body (self.mode says append or start over),
        "done" (nothing after the offset: the .part is complete), or try "again" (it is stale)."""
        self.expected = _checksum(r) or self.expected
        if r.status_code == 416:  # nothing after offset: complete, or a stale .part
            if _total_size(r) != self.offset:
                self.part.unlink(missing_ok=True)
                self.hasher, self.hashed = hashlib.sha256(), 0
                return "again"
            return "done"
        if r.status_code == 206 and _range_start(r) == self.offset:
            self.mode = "ab"
        else:  # a full body (200): start over
            self.mode, self.hasher, self.hashed = "wb", hashlib.sha256(), 0
        return "write"

    def open(self) -> IO[bytes]:
        return open(self.part, self.mode)  # the caller closes it

    def write(self, fh: IO[bytes], chunk: bytes) -> None:
        fh.write(chunk)
        self.hasher.update(chunk)
        self.hashed += len(chunk)

    @staticmethod
    def flush(fh: IO[bytes]) -> None:
        fh.flush()
        os.fsync(fh.fileno())

    def broke(self, exc: Exception) -> float:
        """The connection broke: seconds to wait before resuming, or APIConnectionError."""
        grew = self.part.exists() and self.part.stat().st_size > self.offset
        self.failures = 1 if grew else self.failures + 1  # cuts that make progress may go on
        if self.failures >= self.retry.max_attempts:
            size = self.part.stat().st_size if self.part.exists() else 0
            raise APIConnectionError(
                f"download of {self.name} broke off at {size} bytes ({exc}); call again to resume from {self.part}"
            ) from exc
        return self.retry.delay(max(self.failures, 1))

    def finish(self) -> Path:
        """Check the sha256 (self.expected) and move the file into place."""
        if self.expected is None:
            self.part.unlink(missing_ok=True)
            raise CTTV2Error(f"the server published no sha256 for {self.name}; nothing was saved")
        actual = self.hasher.hexdigest()
        if actual != self.expected.lower():
            self.part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{self.name}: sha256 {actual} does not match the server's {self.expected}; nothing was saved"
            )
        os.replace(self.part, self.target)
        return self.target


def _target_path(name: str, path: str | os.PathLike[str] | None) -> Path:
    base = PurePosixPath(name).name
    if not base or base in (".", ".."):
        raise ValueError(f"not an artifact name: {name!r}")
    if path is None:
        return Path.cwd() / base
    p = Path(path).expanduser()
    as_dir = p.is_dir() or str(path).endswith(("/", os.sep))  # "out/" names a folder to create
    return p / base if as_dir else p


def _checksum(r: httpx.Response) -> str | None:
    value = r.headers.get("X-Checksum-SHA256") or r.headers.get("ETag", "").strip().removeprefix("W/").strip('"')
    return value.lower() if value and len(value) == 64 else None


def _range_start(r: httpx.Response) -> int | None:
    # Content-Range: bytes START-END/TOTAL
    try:
        return int(r.headers["Content-Range"].split()[1].split("-")[0])
    except (KeyError, IndexError, ValueError):
        return None


def _total_size(r: httpx.Response) -> int | None:
    try:
        return int(r.headers["Content-Range"].rsplit("/", 1)[1])
    except (KeyError, IndexError, ValueError):
        return None


def _hash_file(path: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h
