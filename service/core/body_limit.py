"""Request body size limits, answered as a 413 in the one error shape before the app reads
the body: CTTV2_MAX_BODY_BYTES for JSON and other bodies, CTTV2_MAX_UPLOAD_MB for multipart
uploads (weights files)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.config import get_settings

MULTIPART_OVERHEAD = 64 * 1024


def _limit_for(headers: dict[bytes, bytes]) -> tuple[int, str, str]:
    """(limit in bytes, the field to blame, the message) for this request's body."""
    settings = get_settings()
    if headers.get(b"content-type", b"").lower().startswith(b"multipart/"):
        # The file itself is held to the limit by the upload handler; this bounds the whole
        # body (the file, its few small fields and the multipart framing).
        limit = settings.max_upload_mb * 1024 * 1024 + MULTIPART_OVERHEAD
        return limit, "file", f"uploads are limited to {settings.max_upload_mb} MB (CTTV2_MAX_UPLOAD_MB)"
    return (
        settings.max_body_bytes,
        "body",
        f"request bodies are limited to {settings.max_body_bytes} bytes (CTTV2_MAX_BODY_BYTES)",
    )


async def _send_413(send: Send, field: str, message: str) -> None:
    error = {
        "code": "payload_too_large",
        "message": f"{field}: {message}",
        "fields": [{"field": field, "message": message}],
    }
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit, field, message = _limit_for(headers)
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False  # the server rejects a malformed length itself
            if too_big:
                await _send_413(send, field, message)
                return
            await self.app(scope, receive, send)  # the server delivers at most that many bytes
            return

        # No Content-Length (chunked): count as it arrives. Past the limit, answer 413 and
        # tell the app the client went away; whatever it tries to send afterwards is dropped.
        seen = 0
        answered = False

        async def counted_receive() -> Message:
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    answered = True
                    await _send_413(send, field, message)
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            if not answered:
                await send(msg)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not answered:
                raise
