"""A real HTTP reverse proxy in front of a test stack's API that misbehaves on cue: it drops
connections, answers error statuses, or cuts a response body short, so client retry and resume
logic is tested against real sockets (no mock transport).

    proxy = FaultyProxy(stack.url)
    proxy.on("POST", "/v1/jobs", FORWARD_THEN_DROP, status(503, retry_after="0"))
    Client(proxy.url, token).jobs.submit(...)   # the 3rd attempt is forwarded normally
    proxy.requests                              # what arrived, in order
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
}

DROP = "drop"  # close the connection without forwarding or answering
FORWARD_THEN_DROP = "forward-then-drop"  # the API does the work; its answer is lost


@dataclass(frozen=True)
class Status:
    code: int
    retry_after: str | None = None


def status(code: int, retry_after: str | None = None) -> Status:
    """Answer with this status (and the API's error shape) without forwarding."""
    return Status(code, retry_after)


@dataclass(frozen=True)
class CutBody:
    after_bytes: int  # forward, but close the connection after this many body bytes


@dataclass(frozen=True)
class Corrupt:
    at_byte: int  # forward, with the body byte at this offset flipped


@dataclass
class Seen:
    method: str
    path: str
    headers: httpx.Headers
    at: float
    action: object = None
    response_status: int | None = None
    response_headers: httpx.Headers = field(default_factory=httpx.Headers)


class FaultyProxy:
    def __init__(self, target_url: str) -> None:
        self.target = target_url.rstrip("/")
        self.requests: list[Seen] = []
        self._rules: list[tuple[str, str, list[object]]] = []
        self._lock = threading.Lock()
        self._upstream = httpx.Client(base_url=self.target, timeout=httpx.Timeout(60.0, read=120.0))
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def on(self, method: str, path: str, *actions: object) -> None:
        """The next len(actions) requests to method and path (query string ignored) get these
        actions, in order; every other request is forwarded untouched."""
        with self._lock:
            self._rules.append((method.upper(), path, list(actions)))

    def seen(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method.upper() and r.path.split("?")[0] == path]

    def _take(self, method: str, path: str) -> object:
        with self._lock:
            for m, rule_path, actions in self._rules:
                if m == method and path.split("?")[0] == rule_path and actions:
                    return actions.pop(0)
        return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultyProxy

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_GET

    def _handle(self) -> None:
        proxy = self.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = Seen(self.command, self.path, httpx.Headers(list(self.headers.items())), time.monotonic())
        seen.action = action = proxy._take(self.command, self.path)
        proxy.requests.append(seen)
        if action == DROP:
            self.close_connection = True
            return
        if isinstance(action, Status):
            self._answer_status(action, seen)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        request = proxy._upstream.build_request(self.command, self.path, headers=headers, content=body)
        upstream = proxy._upstream.send(request, stream=True)
        try:
            seen.response_status = upstream.status_code
            seen.response_headers = upstream.headers
            if action == FORWARD_THEN_DROP:
                upstream.read()
                self.close_connection = True
                return
            self._relay(upstream, action)
        finally:
            upstream.close()

    def _answer_status(self, action: Status, seen: Seen) -> None:
        payload = b'{"error": {"code": "injected", "message": "injected by the test proxy"}}'
        self.send_response(action.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if action.retry_after is not None:
            self.send_header("Retry-After", action.retry_after)
        self.end_headers()
        self.wfile.write(payload)
        seen.response_status = action.code

    def _relay(self, upstream: httpx.Response, action: object) -> None:
        self.send_response(upstream.status_code)
        length = upstream.headers.get("Content-Length")
        for k, v in upstream.headers.multi_items():
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("server", "date"):
                self.send_header(k, v)
        if length is not None:
            self.send_header("Content-Length", length)
        else:  # a stream (SSE): the body ends when the connection closes
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0
        for chunk in upstream.iter_raw():
            if isinstance(action, Corrupt) and sent <= action.at_byte < sent + len(chunk):
                i = action.at_byte - sent
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
            if isinstance(action, CutBody) and sent + len(chunk) >= action.after_bytes:
                self.wfile.write(chunk[: action.after_bytes - sent])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)
            self.wfile.flush()
            sent += len(chunk)
