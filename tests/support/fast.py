"""The fast tests' harness: the FastAPI app in this process, driven by Starlette's TestClient,
on the embedded default (SQLite + the filesystem broker) and on PostgreSQL + Redis. No `cttv2
serve`, no worker: what the API itself does, against a real database, a real broker and real
files (nothing mocked). The tests talk HTTP only; the database and the broker are read
directly where a test checks what the API stored or published.

The app reads its settings, engine and broker through module-level caches (functools.lru_cache
in service.core), so one backend is active at a time: `activate()` sets the backend's CTTV2_*
variables, clears those caches, and puts everything back afterwards. Each backend (a state
folder; for PostgreSQL a fresh database `cttv2_fast_<hex>` and a Redis queue of its own) is
made once per test session and removed at its end.

Use it through the fixtures in each fast test folder's conftest.py (`from tests.support.fast
import fast_backend, api`): `api` is module-scoped, parametrized over both backends.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support.stack import REDIS_URL, create_pg_database, drop_pg_database, pg_url

BACKENDS = ("embedded", "postgres")


# -- switching the app's settings ---------------------------------------------------------------


def reset_app_caches() -> None:
    """Forget every cached settings object, engine and broker app of the service (and the
    worker's shared modules), closing what holds connections. Found by walking the loaded
    modules, so a cache that moves to another module is still found."""
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("service.", "worker.")):
            continue
        for attr in list(vars(module).values()):
            if not (callable(attr) and hasattr(attr, "cache_clear") and hasattr(attr, "cache_info")):
                continue
            if getattr(attr, "__module__", None) != name:
                continue  # imported from elsewhere: cleared where it is defined
            if attr.cache_info().currsize and not inspect.signature(attr).parameters:
                _close(attr())
            attr.cache_clear()


def _close(value: Any) -> None:
    try:
        if hasattr(value, "dispose"):  # a SQLAlchemy engine
            value.dispose()
        elif type(value).__name__ == "Celery":
            value.close()
    except Exception:  # noqa: BLE001 - best effort: the object is dropped either way
        pass


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Exactly these CTTV2_* variables (others unset) and fresh caches; restored on exit."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("CTTV2_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(env)
    reset_app_caches()
    try:
        yield
    finally:
        reset_app_caches()
        for k in [k for k in os.environ if k.startswith("CTTV2_")]:
            del os.environ[k]
        os.environ.update(saved)


# -- a backend: where the data lives ------------------------------------------------------------


@dataclass
class FastBackend:
    name: str  # "embedded" | "postgres"
    root: Path
    env: dict[str, str]
    db_name: str | None = None
    admin_token: str = ""
    _engine: Any = None

    @classmethod
    def create(cls, name: str, root: Path) -> FastBackend:
        queue = f"cttv2_fast_{uuid.uuid4().hex[:10]}"
        env = {
            "CTTV2_STATE_DIR": str(root / "state"),
            "CTTV2_DATA_DIR": str(root / "data"),
            "CTTV2_WEIGHTS_DIR": str(root / "weights"),
            "CTTV2_ARTIFACT_DIR": str(root / "artifacts"),
            "CTTV2_QUEUE_NAME": queue,
            "CTTV2_TOKEN_PEPPER": uuid.uuid4().hex,
            "CTTV2_DEVICE": "cpu",
        }
        backend = cls(name=name, root=root, env=env)
        if name == "postgres":
            backend.db_name = create_pg_database("cttv2_fast")
            env["CTTV2_DATABASE_URL"] = pg_url(backend.db_name)
            env["CTTV2_BROKER_URL"] = REDIS_URL
        elif name != "embedded":
            raise ValueError(name)
        try:
            with environment(env):
                backend._bootstrap()
        except BaseException:
            backend.destroy()
            raise
        return backend

    def _bootstrap(self) -> None:
        """Migrate the database and create the first admin, with the `cttv2` commands."""
        from click.testing import CliRunner

        import cttv2_cli.server  # noqa: F401  (registers `db` and `admin` on the cli group)
        from cttv2_cli.main import cli

        runner = CliRunner()
        for args in (["db", "upgrade"], ["admin", "create-user", "root", "--admin"]):
            res = runner.invoke(cli, args, catch_exceptions=False)
            assert res.exit_code == 0, f"cttv2 {' '.join(args)}: {res.output}"
        self.admin_token = res.output.strip().splitlines()[-1]

    @property
    def database_url(self) -> str:
        return self.env.get("CTTV2_DATABASE_URL") or f"sqlite:///{self.root / 'state' / 'cttv2.db'}"

    @property
    def queue_name(self) -> str:
        return self.env["CTTV2_QUEUE_NAME"]

    def sql(self, query: str, **params: Any) -> list[tuple]:
        """Read (or write) the database directly, for what the API does not show."""
        from sqlalchemy import create_engine, text

        if self._engine is None:
            self._engine = create_engine(self.database_url)
        with self._engine.begin() as conn:
            result = conn.execute(text(query), params)
            return [tuple(r) for r in result] if result.returns_rows else []

    def published(self) -> list[tuple[str, list]]:
        """(task name, args) of every message waiting in this backend's job queue, oldest
        first: files of the filesystem broker, or the Redis list. Celery's message format
        (protocol 2: the task name in the headers, a base64 JSON body [args, kwargs, embed])."""
        if self.name == "embedded":
            folder = self.root / "state" / "broker" / "queue"
            files = sorted(folder.glob(f"*.{self.queue_name}.msg"), key=lambda p: int(p.name.split("_", 1)[0]))
            raw = [p.read_bytes() for p in files]  # named <ms>_<uuid>.<queue>.msg
        else:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            try:
                raw = list(reversed(client.lrange(self.queue_name, 0, -1)))  # LPUSHed: newest first
            finally:
                client.close()
        out = []
        for blob in raw:
            message = json.loads(blob)
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]
            out.append((message["headers"]["task"], args))
        return out

    def destroy(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self.db_name:
            drop_pg_database(self.db_name)
            self.db_name = None
        if self.name == "postgres":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            try:
                keys = list(client.scan_iter(match=f"*{self.queue_name}*", count=1000))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()
        shutil.rmtree(self.root, ignore_errors=True)


_backends: dict[str, FastBackend] = {}


def get_backend(name: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> FastBackend:
    """One backend per name and test session, removed when the session ends."""
    if name not in _backends:
        backend = FastBackend.create(name, tmp_path_factory.mktemp(f"fast-{name}"))
        request.config.add_cleanup(backend.destroy)
        _backends[name] = backend
    return _backends[name]


# -- the app and its clients --------------------------------------------------------------------


@dataclass
class Api:
    """The app on one backend, and clients for it. `user()` makes a new user (through the
    admin API) and returns a client authenticated as them, with .user_id, .name, .token."""

    backend: FastBackend
    app: Any
    _clients: list[TestClient] = field(default_factory=list)
    _admin: TestClient | None = None

    @property
    def name(self) -> str:
        return self.backend.name

    def client(self, token: str | None = None) -> TestClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = TestClient(self.app, base_url="http://testserver", headers=headers)
        client.__enter__()
        self._clients.append(client)
        return client

    @property
    def admin(self) -> TestClient:
        """The first admin (made by `cttv2 admin create-user root --admin`)."""
        if self._admin is None:
            self._admin = self.client(self.backend.admin_token)
        return self._admin

    def user(self, name: str | None = None, *, admin: bool = False) -> TestClient:
        name = name or f"u{uuid.uuid4().hex[:10]}"
        r = self.admin.post("/v1/admin/users", json={"name": name, "is_admin": admin})
        assert r.status_code == 201, r.text
        created = r.json()
        client = self.client(created["token"]["token"])
        client.user_id = created["user"]["id"]
        client.name = name
        client.token = created["token"]["token"]
        return client

    def sql(self, query: str, **params: Any) -> list[tuple]:
        return self.backend.sql(query, **params)

    def published(self) -> list[tuple[str, list]]:
        return self.backend.published()

    @contextmanager
    def settings(self, **overrides: Any) -> Iterator[None]:
        """The app with some settings changed (e.g. max_active_jobs_per_user=2), for a block."""
        env = {**self.backend.env, **{f"CTTV2_{k.upper()}": str(v) for k, v in overrides.items()}}
        with environment(env):
            yield

    def close(self) -> None:
        for client in self._clients:
            client.__exit__(None, None, None)
        self._clients.clear()


@pytest.fixture(scope="session", params=BACKENDS)
def fast_backend(request, tmp_path_factory) -> FastBackend:
    """A migrated database with an admin: SQLite + filesystem broker, or PostgreSQL + Redis."""
    return get_backend(request.param, request, tmp_path_factory)


@pytest.fixture(scope="module")
def api(fast_backend: FastBackend) -> Iterator[Api]:
    """The app (service.main.create_app) on one backend, active for a module's tests."""
    with environment(fast_backend.env):
        from service.main import create_app

        api = Api(backend=fast_backend, app=create_app())
        try:
            yield api
        finally:
            api.close()
