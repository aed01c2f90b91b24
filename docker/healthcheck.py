#!/usr/bin/env python3
"""Container health checks, used by the images' HEALTHCHECK and by docker-compose.yml.

    cttv2-healthcheck http URL   healthy when URL answers 2xx within the timeout
    cttv2-healthcheck worker     healthy when a `cttv2 worker` process runs in this container
                                 and the broker (CTTV2_BROKER_URL) accepts a connection

Why not a Celery ping for the worker: it runs jobs in the solo pool (one job in its main
process, for clean SIGTERM checkpoints) with remote control off, so it could not answer a
ping during a job anyway, and a job can take hours.

Exit 0 healthy, 1 unhealthy (the reason on stderr, which Docker keeps in the health log).
`http` needs only the standard library, so the API image stays small; `worker` uses kombu,
which the worker image has through Celery.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def check_http(url: str, timeout: float) -> str | None:
    """None when healthy, else the reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if 200 <= response.status < 300:
                return None
            return f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} unreachable: {exc}"


def find_process(command: list[str], proc: Path = Path("/proc")) -> int | None:
    """PID of a process whose argv holds `command` (first word compared by basename, so
    `/opt/venv/bin/cttv2 worker` and `python .../cttv2 worker` both match `cttv2 worker`)."""
    first, rest = command[0], command[1:]
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():  # not this probe
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process ended while we looked
            continue
        for i, arg in enumerate(argv):
            if os.path.basename(arg) == first and argv[i + 1 : i + 1 + len(rest)] == rest:
                return int(entry.name)
    return None


def check_broker(broker_url: str, timeout: float) -> str | None:
    from kombu import Connection

    where = broker_url.split("@")[-1]  # never print a password
    try:
        with Connection(broker_url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any transport error is "unreachable"; never crash
        return f"broker {where} unreachable: {str(exc).splitlines()[0] if str(exc) else exc!r}"
    return None


def check_worker(broker_url: str, command: list[str], timeout: float) -> str | None:
    if find_process(command) is None:
        return f"no `{' '.join(command)}` process is running"
    return check_broker(broker_url, timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="cttv2 container health check")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    sub = parser.add_subparsers(dest="check", required=True)
    http = sub.add_parser("http", help="GET a URL, healthy on 2xx")
    http.add_argument("url")
    worker = sub.add_parser("worker", help="worker process alive and broker reachable")
    worker.add_argument("--command", nargs="+", default=["cttv2", "worker"], help="the worker's command line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check == "http":
        reason = check_http(args.url, args.timeout)
    else:
        broker = os.environ.get("CTTV2_BROKER_URL")
        if not broker:
            print("unhealthy: CTTV2_BROKER_URL is not set", file=sys.stderr)
            return 1
        reason = check_worker(broker, args.command, args.timeout)
    if reason is None:
        return 0
    print(f"unhealthy: {reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
