"""Uploading weights through the API and waiting for a worker's check (tests/results,
tests/integration)."""

from __future__ import annotations

import time
from pathlib import Path


def upload(client, path: Path, **fields):
    data = {"arch": "swin_micro", **fields}
    with open(path, "rb") as fh:
        return client.post("/v1/weights", data=data, files={"file": (path.name, fh, "application/octet-stream")})


def wait_validated(client, weights_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/v1/weights/{weights_id}").json()
        if record["status"] != "pending":
            return record
        time.sleep(0.3)
    raise AssertionError(f"weights {weights_id} still pending after {timeout} s")
