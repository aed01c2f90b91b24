"""docker/healthcheck.py against real parts: a real HTTP server, a real process table and the
real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/15"


def load_healthcheck():
    spec = importlib.util.spec_from_file_location("cttv2_healthcheck", ROOT / "docker" / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = load_healthcheck()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # http.server calls it by this name
        self.send_response(200 if self.path == "/readyz" else 503)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_healthy_on_2xx(http_server):
    assert healthcheck.check_http(f"{http_server}/readyz", 3) is None
    assert healthcheck.main(["http", f"{http_server}/readyz"]) == 0


def test_http_unhealthy_on_503_and_when_down(http_server, capsys):
    assert healthcheck.check_http(f"{http_server}/notready", 3) == f"{http_server}/notready answered 503"
    assert healthcheck.main(["--timeout", "2", "http", "http://127.0.0.1:9/readyz"]) == 1
    assert "unreachable" in capsys.readouterr().err


@pytest.fixture
def fake_worker(tmp_path):
    """A process whose command line is `<unique name> worker`, like `cttv2 worker`."""
    name = f"cttv2-test-{uuid.uuid4().hex[:8]}"
    script = tmp_path / name
    script.write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script), "worker"])
    time.sleep(0.2)
    yield name, proc.pid
    proc.kill()
    proc.wait()


def test_find_process_by_command_line(fake_worker):
    name, pid = fake_worker
    assert healthcheck.find_process([name, "worker"]) == pid
    assert healthcheck.find_process([name, "serve"]) is None


@pytest.mark.redis
def test_worker_healthy_with_process_and_broker(fake_worker, monkeypatch):
    name, _ = fake_worker
    monkeypatch.setenv("CTTV2_BROKER_URL", REDIS_URL)
    assert healthcheck.main(["worker", "--command", name, "worker"]) == 0


@pytest.mark.redis
def test_worker_unhealthy_without_process(monkeypatch, capsys):
    monkeypatch.setenv("CTTV2_BROKER_URL", REDIS_URL)
    missing = f"cttv2-test-{uuid.uuid4().hex[:8]}"
    assert healthcheck.main(["worker", "--command", missing, "worker"]) == 1
    assert f"no `{missing} worker` process is running" in capsys.readouterr().err


def test_worker_unhealthy_when_broker_down(fake_worker, monkeypatch, capsys):
    name, _ = fake_worker
    monkeypatch.setenv("CTTV2_BROKER_URL", "redis://:secret@127.0.0.1:9/0")
    started = time.monotonic()
    assert healthcheck.main(["--timeout", "2", "worker", "--command", name, "worker"]) == 1
    assert time.monotonic() - started < 15  # inside the compose healthcheck's timeout
    err = capsys.readouterr().err
    assert "broker 127.0.0.1:9/0 unreachable" in err
    assert "secret" not in err


def test_worker_needs_a_broker_url(monkeypatch, capsys):
    monkeypatch.delenv("CTTV2_BROKER_URL", raising=False)
    assert healthcheck.main(["worker"]) == 1
    assert "CTTV2_BROKER_URL is not set" in capsys.readouterr().err
