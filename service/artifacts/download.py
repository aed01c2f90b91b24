"""Streaming one stored file with single-range support (RFC 9110), checksum headers and no
more than one chunk in memory, from either backend of the artifact store.

Everything (size, sha256, bytes) comes from one opened version: a local file's descriptor,
or an object read with If-Match on the ETag its HEAD gave. A checkpoint the worker replaces
mid-download does not mix two versions.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from urllib.parse import quote

from fastapi.responses import StreamingResponse

from service.artifacts.store import Blob
from service.core.errors import APIError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(APIError):
    status_code = 416
    code = "range_not_satisfiable"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) for one satisfiable byte range; None to send the whole file
    (no header, several ranges or a malformed one: a server may ignore Range)."""
    if not header:
        return None
    m = _RANGE.match(header.strip().replace(" ", ""))
    if not m or (not m[1] and not m[2]):
        return None
    if not m[1]:  # suffix: the last n bytes
        n = int(m[2])
        if n == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - n, 0), size - 1
    start = int(m[1])
    end = int(m[2]) if m[2] else size - 1
    if m[2] and end < start:
        return None  # malformed (last < first): ignored
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"range not satisfiable: the file has {size} bytes", headers={"Content-Range": f"bytes */{size}"}
    )


def blob_response(
    blob: Blob, name: str, sha256: str, range_header: str | None, if_range: str | None
) -> StreamingResponse:
    """The stored file (or one range of it), streamed a chunk at a time; `blob` is closed
    when the body ends or the client goes."""
    size = blob.size
    sha256 = blob.sha256 or sha256  # the object's own checksum when the store keeps one
    try:
        etag = f'"{sha256}"'
        wanted = None if (if_range and if_range.strip() != etag) else parse_range(range_header, size)
    except BaseException:
        blob.close()
        raise
    filename = name.rsplit("/", 1)[-1]
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "X-Checksum-SHA256": sha256,
        "Content-Disposition": f"attachment; filename*=utf-8''{quote(filename)}",
    }
    media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(_body(blob, 0, size), media_type=media_type, headers=headers)
    start, end = wanted
    headers["Content-Length"] = str(end - start + 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(
        _body(blob, start, end - start + 1), status_code=206, media_type=media_type, headers=headers
    )


def _body(blob: Blob, start: int, length: int) -> Iterator[bytes]:
    try:
        yield from blob.chunks(start, length)
    finally:
        blob.close()
