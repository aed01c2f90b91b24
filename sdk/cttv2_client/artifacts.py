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
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

from cttv2_client.errors import APIConnectionError, ChecksumMismatch, CTTV2Error
from cttv2_client.models import Artifact

if TYPE_CHECKING:
    from cttv2_client.client import Client

DOWNLOAD_TIMEOUT = httpx.Timeout(10.0, read=120.0)
CHUNK = 1 << 20


class Artifacts:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, job_id: int) -> list[Artifact]:
        r = self._client.request("GET", f"/v1/jobs/{int(job_id)}/artifacts")
        return [Artifact.model_validate(a) for a in r.json().get("items", [])]

    def download(self, job_id: int, name: str, path: str | os.PathLike[str] | None = None) -> Path:
        """Save artifact `name` (e.g. "weights.safetensors", "checkpoints/best.pt") of a job.

        path: a file, or a directory to save into (an existing one, or one written with a
        trailing "/"; default: the current directory), under the artifact's base name. Returns the saved file's path. Raises
        ChecksumMismatch (and keeps nothing) when the bytes do not match the server's sha256.
        """
        target = _target_path(name, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        url = f"/v1/jobs/{int(job_id)}/artifacts/{quote(name, safe='/')}"
        retry = self._client.retry
        expected: str | None = None
        hasher, hashed = hashlib.sha256(), 0
        failures = 0
        while True:
            offset = part.stat().st_size if part.exists() else 0
            if hashed != offset:  # a .part left by an earlier call: hash what it holds
                hasher, hashed = _hash_file(part), offset
            headers = {"Accept": "*/*"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                if expected:  # only resume onto the same version of the file
                    headers["If-Range"] = f'"{expected}"'
            try:
                with self._client.stream(
                    "GET", url, headers=headers, timeout=DOWNLOAD_TIMEOUT, accept_statuses=(416,)
                ) as r:
                    expected = _checksum(r) or expected
                    if r.status_code == 416:  # nothing after offset: complete, or a stale .part
                        if _total_size(r) != offset:
                            part.unlink(missing_ok=True)
                            hasher, hashed = hashlib.sha256(), 0
                            continue
                        break
                    if r.status_code == 206 and _range_start(r) == offset:
                        mode = "ab"
                    else:  # a full body (200): start over
                        mode, hasher, hashed = "wb", hashlib.sha256(), 0
                    with open(part, mode) as fh:
                        for chunk in r.iter_bytes():  # as received: nothing buffered is lost on a cut
                            fh.write(chunk)
                            hasher.update(chunk)
                            hashed += len(chunk)
                        fh.flush()
                        os.fsync(fh.fileno())
                break
            except (httpx.TransportError, APIConnectionError) as exc:
                grew = part.exists() and part.stat().st_size > offset
                failures = 1 if grew else failures + 1  # cuts that make progress may go on
                if failures >= retry.max_attempts:
                    raise APIConnectionError(
                        f"download of {name} broke off at {part.stat().st_size if part.exists() else 0} bytes "
                        f"({exc}); call again to resume from {part}"
                    ) from exc
                self._client.sleep(retry.delay(max(failures, 1)))
        if expected is None:
            expected = next((a.sha256 for a in self.list(job_id) if a.name == name), None)
        if expected is None:
            part.unlink(missing_ok=True)
            raise CTTV2Error(f"the server published no sha256 for {name}; nothing was saved")
        actual = hasher.hexdigest()
        if actual != expected.lower():
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{name}: sha256 {actual} does not match the server's {expected}; nothing was saved")
        os.replace(part, target)
        return target


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
