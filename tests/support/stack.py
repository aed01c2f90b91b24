"""A real cttv2 deployment for tests: `cttv2 serve` and `cttv2 worker` as subprocesses, on
either the embedded default (SQLite + filesystem broker) or PostgreSQL + Redis."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("CTTV2_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CTTV2_TEST_REDIS", "redis://127.0.0.1:6379/0")

# Fast protocol timings so fault tests finish in seconds.
FAST_PROTOCOL = {
    "CTTV2_HEARTBEAT_INTERVAL_S": "1",
    "CTTV2_HEARTBEAT_TIMEOUT_S": "4",
    "CTTV2_MAINTENANCE_INTERVAL_S": "1",
    "CTTV2_REQUEUE_GRACE_S": "2",
    "CTTV2_REQUEUE_AFTER_S": "30",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_pg_database(prefix: str = "cttv2_t") -> str:
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        if self.wait(timeout) is None:
            self.popen.kill()
            self.popen.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Stack:
    backend: str  # "embedded" | "postgres"
    root: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    api: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    _db_name: str | None = None
    _n: int = 0

    @classmethod
    def create(cls, backend: str, root: Path, extra_env: dict[str, str] | None = None) -> Stack:
        root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTTV2_")}
        env.update(
            {
                "CTTV2_STATE_DIR": str(root / "state"),
                "CTTV2_DATA_DIR": str(root / "data"),
                "CTTV2_WEIGHTS_DIR": str(root / "weights"),
                "CTTV2_ARTIFACT_DIR": str(root / "artifacts"),
                "CTTV2_QUEUE_NAME": f"cttv2_t_{uuid.uuid4().hex[:8]}",
                "CTTV2_TOKEN_PEPPER": uuid.uuid4().hex,
                "CTTV2_DEVICE": "cpu",
                "PYTHONUNBUFFERED": "1",
                **FAST_PROTOCOL,
            }
        )
        stack = cls(backend=backend, root=root, env=env)
        if backend == "postgres":
            stack._db_name = create_pg_database()
            env["CTTV2_DATABASE_URL"] = pg_url(stack._db_name)
            env["CTTV2_BROKER_URL"] = REDIS_URL
        elif backend != "embedded":
            raise ValueError(backend)
        env.update(extra_env or {})
        return stack

    # -- processes --------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        self._n += 1
        log_path = self.root / f"{name}-{self._n}.log"
        fh = open(log_path, "wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "cttv2_cli", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return Proc(name, popen, log_path)

    def cli(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [sys.executable, "-m", "cttv2_cli", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"cttv2 {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def start_api(self) -> Proc:
        self.api = self._spawn("api", ["serve", "--host", "127.0.0.1", "--port", str(self.port)])
        self.wait_http("/readyz", timeout=60, proc=self.api)
        return self.api

    def start_worker(self, env: dict[str, str] | None = None, wait_ready: bool = True) -> Proc:
        proc = self._spawn("worker", ["worker", "--loglevel", "INFO"], env=env)
        self.workers.append(proc)
        if wait_ready:
            deadline = time.monotonic() + 120
            while "ready on queue" not in proc.log():
                if not proc.alive():
                    raise AssertionError(f"worker died at start:\n{proc.log()[-4000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"worker not ready after 120 s:\n{proc.log()[-4000:]}")
                time.sleep(0.2)
        return proc

    def stop(self) -> None:
        procs = [p for p in [*self.workers, self.api] if p is not None and p.alive()]
        for proc in procs:  # all at once: each warm shutdown takes a moment
            proc.signal(signal.SIGTERM)
        for proc in procs:
            proc.stop()

    def destroy(self, keep_files: bool = False) -> None:
        self.stop()
        if self._db_name:
            drop_pg_database(self._db_name)
        if not keep_files and not os.environ.get("CTTV2_TEST_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    def database_url(self) -> str:
        return self.env.get("CTTV2_DATABASE_URL") or f"sqlite:///{self.root / 'state' / 'cttv2.db'}"

    def sql(self, query: str, **params) -> list[tuple]:
        """Read the stack's database directly (tests check what the API does not show)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.database_url())
        try:
            with engine.begin() as conn:
                result = conn.execute(text(query), params)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def send_task(self, job_id: int) -> None:
        """Publish a run_job message directly, as a duplicate delivery would."""
        code = "import sys; from service.core import broker; broker.publish(broker.RUN_JOB_TASK, int(sys.argv[1]))"
        subprocess.run([sys.executable, "-c", code, str(job_id)], cwd=ROOT, env=self.env, check=True, timeout=60)

    # -- HTTP -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_http(self, path: str, timeout: float, proc: Proc | None = None) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if proc is not None and not proc.alive():
                raise AssertionError(f"{proc.name} exited:\n{proc.log()[-4000:]}")
            try:
                r = httpx.get(self.url + path, timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise AssertionError(f"{path} not ready after {timeout} s: {last}")

    def create_user(self, name: str | None = None, admin: bool = False) -> str:
        name = name or f"u{uuid.uuid4().hex[:8]}"
        args = ["admin", "create-user", name] + (["--admin"] if admin else [])
        return self.cli(*args).stdout.strip().splitlines()[-1]

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def running_stack(
    backend: str,
    root: Path,
    extra_env: dict[str, str] | None = None,
    *,
    workers: int = 1,
    prepare: Callable[[Stack], None] | None = None,
) -> Iterator[Stack]:
    """A started stack (API + `workers` workers), destroyed on exit. `prepare` may change the
    stack's env before anything starts."""
    s = Stack.create(backend, root, extra_env)
    try:
        if prepare is not None:
            prepare(s)
        s.start_api()
        for _ in range(workers):
            s.start_worker()
        yield s
    finally:
        s.destroy()


def wait_for_job(
    client: httpx.Client,
    job_id: int,
    statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
    timeout: float = 300,
    stack: Stack | None = None,
) -> dict:
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job.get("status") in statuses:
            return job
        time.sleep(0.3)
    logs = ""
    if stack is not None:
        logs = "\n".join(w.log()[-3000:] for w in stack.workers)
    raise AssertionError(f"job {job_id} not in {statuses} after {timeout} s: {job}\n{logs}")
