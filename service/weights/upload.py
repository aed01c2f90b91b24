"""Receiving a multipart upload straight to disk: the file part is written chunk by chunk
(hashed on the way) into a temporary file beside its final place, never held whole in memory,
and refused once it passes the size limit (413) or the room left in the user's storage quota
(507; nothing is kept)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
from fastapi import Request

from service.core.errors import APIError, TooLarge, field_error
from service.users.storage import StorageUse

FIELD_LIMIT = 1024  # bytes of a plain (non-file) field
FIELDS = ("name", "arch", "img_size")
FILE_FIELD = "file"
# After the limit is passed, read (and drop) at most this much more so the client gets the
# 413 instead of a reset connection; past that the connection is simply closed.
DRAIN_LIMIT = 64 << 20


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    path: Path | None = None  # the temporary file; the caller moves it or calls discard()
    size: int = 0
    sha256: str = ""

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class _Receiver:
    """python-multipart callbacks; file bytes are queued and written outside the parser."""

    def __init__(self, folder: Path, max_bytes: int, limit: int | None = None) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.limit = max_bytes if limit is None else limit  # max_bytes, or less: the quota's room
        self.upload = Upload()
        self.too_large = False  # past self.limit: nothing more is written, the file is removed
        self._hash = hashlib.sha256()
        self._fh: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._hname = b""
        self._hvalue = b""
        self._part: str | None = None  # field name of the current part
        self._is_file = False
        self._value = bytearray()

    # -- parser callbacks ------------------------------------------------------------------
    def on_part_begin(self) -> None:
        self._headers, self._part, self._is_file, self._value = [], None, False, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((self._hname.lower(), self._hvalue))
        self._hname, self._hvalue = b"", b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        disposition = dict(self._headers).get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if name != FILE_FIELD:
                raise field_error(name or "body", f"the file goes in the {FILE_FIELD!r} field")
            if self.upload.filename is not None:
                raise field_error(FILE_FIELD, "only one file per upload")
            self.upload.filename = options[b"filename"].decode("utf-8", "replace")
            self._is_file = True
        elif name not in FIELDS:
            raise field_error(name or "body", f"unknown field; expected {FILE_FIELD}, {', '.join(FIELDS)}")
        self._part = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            self.upload.size += len(chunk)
            if self.upload.size > self.limit:
                self.too_large = True
            elif chunk:
                self._pending.append(bytes(chunk))
        else:
            self._value += chunk
            if len(self._value) > FIELD_LIMIT:
                raise field_error(self._part or "body", f"longer than {FIELD_LIMIT} bytes")

    def on_part_end(self) -> None:
        if not self._is_file and self._part:
            self.upload.fields[self._part] = self._value.decode("utf-8", "replace").strip()

    # -- disk ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the queued file bytes (in a worker thread: disk I/O off the event loop)."""
        if self.too_large:
            self._pending.clear()
            self.close(discard=True)
            return
        if not self._pending:
            return
        if self._fh is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.upload.path = self.folder / f".upload-{uuid.uuid4().hex}.part"
            self._fh = open(self.upload.path, "wb")  # noqa: SIM115 - closed in close()
        for chunk in self._pending:
            self._fh.write(chunk)
            self._hash.update(chunk)
        self._pending.clear()

    def close(self, discard: bool = False) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if discard:
            self.upload.discard()
        self.upload.sha256 = self._hash.hexdigest()


async def receive(request: Request, folder: Path, max_bytes: int, storage: StorageUse | None = None) -> Upload:
    """Parse the multipart body; the file part lands in `folder` under a temporary name.
    With `storage` (the user's usage before the upload), a file larger than the room left in
    their quota is refused with a 507 as soon as it passes that room (the request's declared
    Content-Length already when it is far larger): nothing written is kept."""
    import python_multipart
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise field_error("body", "expected multipart/form-data with a file part")
    quota_first = storage is not None and storage.room < max_bytes  # the quota is the nearer limit
    limit = storage.room if storage is not None and quota_first else max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + DRAIN_LIMIT:
        if storage is not None and quota_first and int(declared) <= max_bytes + DRAIN_LIMIT:
            raise storage.upload_refused(int(declared), about="about ")
        raise _too_large(max_bytes)

    rx = _Receiver(folder, max_bytes, limit)
    callbacks = {
        name: getattr(rx, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    # A TypedDict of callbacks in the stubs; built here by name from the receiver's methods.
    parser = python_multipart.MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if rx.too_large and received > limit + DRAIN_LIMIT:
                break
            if not rx.too_large:
                parser.write(chunk)
                await anyio.to_thread.run_sync(rx.flush)
            elif quota_first:
                parser.write(chunk)  # only counts the file's size now (for the message); writes nothing
        if rx.too_large:
            if storage is not None and quota_first and rx.upload.size <= max_bytes:
                cut = received > limit + DRAIN_LIMIT  # stopped reading: the file is larger still
                raise storage.upload_refused(rx.upload.size, about="more than " if cut else "")
            raise _too_large(max_bytes)
        parser.finalize()
    except FormParserError:
        await anyio.to_thread.run_sync(lambda: rx.close(discard=True))
        raise field_error("body", "malformed multipart body") from None
    except BaseException:
        await anyio.to_thread.run_sync(lambda: rx.close(discard=True))
        raise
    await anyio.to_thread.run_sync(rx.close)
    if rx.upload.filename is None or rx.upload.path is None:
        rx.upload.discard()
        raise field_error(FILE_FIELD, "a non-empty file part is required")
    return rx.upload


def _too_large(max_bytes: int) -> APIError:
    mb = max_bytes // (1 << 20)
    return field_error(
        "file",
        f"larger than {mb} MB",
        error=TooLarge,
        summary=f"file: larger than the upload limit of {mb} MB (CTTV2_MAX_UPLOAD_MB)",
    )
