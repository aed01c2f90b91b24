"""A small in-process cttv2 API on a real local HTTP server (no mock transport), for the SDK's
fast tests of wait, events and retries: one job that follows a timeline of events, an event
stream that can be made to 404, stay silent or break, and scripted error answers.

    api = FakeAPI(timeline=[(0, "status", {"status": "queued"}), (0.5, "status", {"status": "succeeded"})])
    Client(api.url, "t").jobs.wait(api.job_id)
    api.seen("GET", "/v1/jobs/1")      # the requests that arrived, with their times
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Event stream behaviours.
STREAM = "stream"  # the job's events as they happen, keep-alive comments while idle
NOT_FOUND = "404"  # an old server or a proxy that forbids the stream
SILENT = "silent"  # headers, then nothing: a proxy that buffers the stream
EMPTY = "empty"  # the retry line, then the connection ends: a stream that keeps breaking


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    at: float


@dataclass
class Answer:
    status: int
    code: str = "injected"
    retry_after: str | None = None


@dataclass
class FakeAPI:
    timeline: list[tuple[float, str, dict[str, Any]]]  # (seconds after start, kind, data)
    job_id: int = 1
    events_mode: str = STREAM
    keepalive_s: float = 0.2
    requests: list[Seen] = field(default_factory=list)
    script: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    bodies: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start = time.monotonic()
        api = self

        class Handler(_Handler):
            owner = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def on(self, method: str, path: str, *answers: Answer) -> None:
        """The next requests to method and path get these answers, in order."""
        self.script.setdefault((method, path), []).extend(answers)

    def serve(self, path: str, *bodies: Any) -> None:
        """GETs of path answer these JSON bodies in turn, the last one from then on."""
        self.bodies[path] = list(bodies)

    def seen(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method and r.path.split("?")[0] == path]

    # -- the job as of now --------------------------------------------------------------
    def events_until(self, now: float) -> list[tuple[int, str, dict[str, Any]]]:
        return [(i + 1, kind, data) for i, (at, kind, data) in enumerate(self.timeline) if at <= now]

    def job(self) -> dict[str, Any]:
        job: dict[str, Any] = {"id": self.job_id, "status": "queued", "attempt": 0, "progress": None}
        for _, kind, data in self.events_until(time.monotonic() - self.start):
            if kind == "status":
                job["status"] = data["status"]
                job["attempt"] = data.get("attempt", job["attempt"])
                if data["status"] == "succeeded":
                    job["result"] = {"test_accuracy": 0.9}
            elif kind == "progress":
                job["progress"] = data
        return job


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FakeAPI

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        api = self.owner
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        api.requests.append(Seen(self.command, path, dict(self.headers.items()), time.monotonic()))
        answers = api.script.get((self.command, path))
        if answers:
            answer = answers.pop(0)
            body = {"error": {"code": answer.code, "message": f"injected {answer.status}"}}
            headers = {"Retry-After": answer.retry_after} if answer.retry_after is not None else {}
            return self._json(answer.status, body, headers)
        if path in api.bodies:
            bodies = api.bodies[path]
            return self._json(200, bodies.pop(0) if len(bodies) > 1 else bodies[0])
        if path == f"/v1/jobs/{api.job_id}":
            return self._json(200, api.job())
        if path == f"/v1/jobs/{api.job_id}/events":
            return self._events()
        if path == "/v1/jobs" and self.command == "POST":
            return self._json(201, api.job())
        return self._json(404, {"error": {"code": "not_found", "message": f"{path} not found"}})

    do_POST = do_DELETE = do_PATCH = do_GET

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def _events(self) -> None:
        api = self.owner
        if api.events_mode == NOT_FOUND:
            return self._json(404, {"detail": "Not Found"})  # what a server without the route says
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            if api.events_mode == SILENT:
                time.sleep(60)
                return
            self._write("retry: 300\n\n")
            if api.events_mode == EMPTY:
                return
            after = int(self.headers.get("Last-Event-ID") or 0)
            last_sent = time.monotonic()
            while True:
                for event_id, kind, data in api.events_until(time.monotonic() - api.start):
                    if event_id <= after:
                        continue
                    self._write(f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n")
                    after, last_sent = event_id, time.monotonic()
                    if kind == "status" and data["status"] in ("succeeded", "failed", "cancelled"):
                        return
                if time.monotonic() - last_sent >= api.keepalive_s:
                    self._write(": keep-alive\n\n")
                    last_sent = time.monotonic()
                time.sleep(0.02)
        except OSError:  # the client went away
            return

    def _write(self, text: str) -> None:
        self.wfile.write(text.encode())
        self.wfile.flush()


def running_job(
    end_at: float, status: str = "succeeded", steps: int = 4, run_at: float = 0.4
) -> list[tuple[float, str, dict[str, Any]]]:
    """A timeline: queued at 0, running at run_at, `steps` progress (and metrics) events, then
    `status` at end_at."""
    timeline: list[tuple[float, str, dict[str, Any]]] = [
        (0.0, "status", {"status": "queued"}),
        (run_at, "status", {"status": "running", "attempt": 1}),
    ]
    for step in range(1, steps + 1):
        at = run_at + (end_at - run_at - 0.1) * step / steps
        timeline.append((at, "progress", {"epoch": 1, "epochs": 1, "step": step, "total_steps": steps}))
        timeline.append((at, "metrics", {"step": step, "epoch": 1, "values": {"train_loss": 1.0 / step}}))
    timeline.append((end_at, "status", {"status": status}))
    return timeline
