"""Helpers for the fault tests: waiting on the database, reading a job's event trail, finding
the worker that holds a job, a private Redis the tests may kill, and the checks every fault
test ends with (one metric row per (key, step), every epoch present, no temp files)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.support.specs import TINY_CTTV2, spec
from tests.support.stack import Proc, Stack, free_port

T = TypeVar("T")

# About half a second per epoch on this CPU (19 batches of 16), checkpointed every epoch: long
# enough to be caught mid-epoch, short enough to finish after a fault.
STEADY = spec(TINY_CTTV2, name="steady", **{"training.epochs": 12, "data.train_per_class": 100})
STEPS_PER_EPOCH = 19  # ceil(3 classes x 100 / 16)


def wait_until(fn: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def events(stack: Stack, job_id: int, kind: str = "status") -> list[dict[str, Any]]:
    rows = stack.sql(
        "SELECT data, created_at FROM job_events WHERE job_id = :j AND kind = :k ORDER BY id", j=job_id, k=kind
    )
    out = []
    for data, created in rows:
        data = data if isinstance(data, dict) else json.loads(data)
        out.append({**data, "_at": created})
    return out


def job_row(stack: Stack, job_id: int) -> dict[str, Any]:
    cols = ("status", "attempt", "lost_count", "worker_id", "error_code", "error", "lease_token")
    row = stack.sql(f"SELECT {', '.join(cols)} FROM jobs WHERE id = :j", j=job_id)[0]
    return dict(zip(cols, row))


def holder(stack: Stack, job_id: int) -> Proc:
    """The worker process running the job (its default name ends with its pid)."""
    worker_id = job_row(stack, job_id)["worker_id"] or ""
    for proc in stack.workers:
        if worker_id.endswith(f"-{proc.popen.pid}"):
            return proc
    raise AssertionError(f"no worker of this stack holds job {job_id} (worker_id {worker_id!r})")


def wait_checkpointed_and_running(stack: Stack, job_id: int, min_epochs: int = 1, timeout: float = 180) -> None:
    """Running, with at least min_epochs checkpointed."""

    def ready() -> bool:
        row = job_row(stack, job_id)
        assert row["status"] in ("queued", "running"), row
        done = stack.sql("SELECT count(*) FROM job_metrics WHERE job_id = :j AND key = 'train_loss'", j=job_id)
        return row["status"] == "running" and done[0][0] >= min_epochs

    wait_until(ready, timeout, f"job {job_id} running with {min_epochs} epoch(s) checkpointed")


def assert_metrics_complete(stack: Stack, job_id: int, epochs: int, steps_per_epoch: int) -> None:
    """Exactly one row per (key, step), and every epoch's row for each per-epoch metric."""
    rows = stack.sql("SELECT key, step, epoch FROM job_metrics WHERE job_id = :j", j=job_id)
    pairs = [(k, s) for k, s, _ in rows]
    assert len(pairs) == len(set(pairs)), "a (key, step) pair has two rows"
    for key in ("train_loss", "test_accuracy", "lr"):
        steps = sorted(s for k, s, _ in rows if k == key)
        assert steps == [steps_per_epoch * e for e in range(1, epochs + 1)], (key, steps)


def assert_no_temp_files(stack: Stack, job_id: int) -> None:
    names = [r[0] for r in stack.sql("SELECT name FROM artifacts WHERE job_id = :j", j=job_id)]
    assert names and not [n for n in names if n.endswith(".tmp") or "/." in n or n.startswith(".")], names
    job_dir = Path(stack.env["CTTV2_ARTIFACT_DIR"]) / "jobs" / str(job_id)
    leftovers = [p.name for p in job_dir.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".probe")]
    assert not leftovers, leftovers


class RedisServer:
    """A private redis-server on a free port, so a test can lose the broker's data without
    touching the machine's shared Redis (other test runs use it at the same time)."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.proc: subprocess.Popen | None = None
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"redis-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self.ping, 20, f"redis on port {self.port}")

    def ping(self) -> bool:
        out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True, check=False)
        return out.stdout.strip() == "PONG"

    def cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    def kill(self) -> None:
        """SIGKILL: whatever it held is gone (it never saves)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.kill()
