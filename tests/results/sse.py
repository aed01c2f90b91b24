"""A small server-sent-events reader for tests: events and keep-alive comments, with a
deadline (keep-alives would otherwise keep a stuck stream open forever)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Stream:
    events: list[dict] = field(default_factory=list)  # {"id", "event", "data"}
    comments: int = 0
    retry: int | None = None


def read_events(client: httpx.Client, path: str, headers: dict | None = None, timeout: float = 180) -> Stream:
    out = Stream()
    deadline = time.monotonic() + timeout
    current: dict = {}
    with client.stream("GET", path, headers=headers or {}, timeout=httpx.Timeout(30)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {path} still open after {timeout} s: {out.events[-3:]}")
            if line == "":
                if "data" in current:
                    out.events.append(
                        {
                            "id": int(current["id"]),
                            "event": current.get("event", "message"),
                            "data": json.loads(current["data"]),
                        }
                    )
                current = {}
            elif line.startswith(":"):
                out.comments += 1
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "retry":
                    out.retry = int(value)
                else:
                    current[name] = value
    return out
