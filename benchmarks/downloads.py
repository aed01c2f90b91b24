"""Artifact downloads stream from disk: the API's memory stays flat while a large file (an
analog Swin-T checkpoint is ~2 GB) goes out. Prints a table; asserts nothing.

    PYTHONPATH=. .venv/bin/python benchmarks/downloads.py [size_mb]
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.specs import TINY_FP
from tests.support.stack import Stack


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(size_mb: int = 1024) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack.create("embedded", Path(tmp))
        try:
            stack.start_api()
            client = stack.client(stack.create_user())
            job = client.post("/v1/jobs", json=TINY_FP).json()  # no worker: it stays queued
            path = Path(stack.env["CTTV2_ARTIFACT_DIR"]) / "jobs" / str(job["id"]) / "checkpoints" / "big.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            block = os.urandom(1 << 20)
            with open(path, "wb") as fh:
                for _ in range(size_mb):
                    fh.write(block)
                    digest.update(block)
            stack.sql(
                "INSERT INTO artifacts (job_id, name, kind, size, sha256, created_at, updated_at) "
                "VALUES (:j, 'checkpoints/big.pt', 'checkpoint', :s, :h, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                j=job["id"],
                s=size_mb << 20,
                h=digest.hexdigest(),
            )
            pid = stack.api.popen.pid
            url = f"/v1/jobs/{job['id']}/artifacts/checkpoints/big.pt"
            client.get(url, headers={"Range": "bytes=0-0"})  # warm up
            base = rss_mb(pid)
            peak = [base]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mb(pid))
                    time.sleep(0.05)

            threading.Thread(target=sample, daemon=True).start()
            got = hashlib.sha256()
            t0 = time.perf_counter()
            with client.stream("GET", url, timeout=600) as r:
                for chunk in r.iter_bytes(1 << 20):
                    got.update(chunk)
            seconds = time.perf_counter() - t0
            done.set()
            ok = got.hexdigest() == r.headers["x-checksum-sha256"] == digest.hexdigest()
            t0 = time.perf_counter()
            tail = client.get(url, headers={"Range": "bytes=-1048576"})
            tail_ms = (time.perf_counter() - t0) * 1000
            print(
                f"{'file':>10} {'MB/s':>8} {'API RSS before':>15} {'API RSS peak':>13} "
                f"{'sha256 ok':>10} {'last 1 MB (Range)':>18}"
            )
            print(
                f"{size_mb:>7} MB {size_mb / seconds:>8.0f} {base:>12.0f} MB {peak[0]:>10.0f} MB {ok!s:>10} "
                f"{tail.status_code:>6} in {tail_ms:.0f} ms"
            )
        finally:
            stack.destroy()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024)
