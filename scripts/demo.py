"""The README's first command: the main job end to end on the embedded default.

Starts the API and one worker (SQLite + filesystem broker under ./.state), creates a user,
pretrains a small Swin digitally on digits 0-4, fine-tunes it on digits 5-9 with c-TTv2 on a
simulated analog device and digitally for comparison, shows progress, prints the results,
and stops what it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path[:0] = [str(ROOT), str(ROOT / "sdk")]  # run from a checkout without installing the SDK

from cttv2_client import Client, CTTV2Error, Job

console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    fh = open(log, "wb")
    return subprocess.Popen([sys.executable, "-m", "cttv2_cli", *args], cwd=ROOT, env=env,
                            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(client: Client, procs: list[subprocess.Popen], timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not client.ready():
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"demo: a server process exited early (see {LOGS})")
        if time.monotonic() > deadline:
            raise SystemExit("demo: the API did not become ready")
        time.sleep(0.3)


def run(client: Client, path: Path, label: str, **overrides) -> Job:
    """Submit a job file with overrides and follow it with a progress bar until it ends."""
    job = client.jobs.submit(path, overrides=overrides)
    return client.jobs.wait(job.id, progress_bar=True, label=label, raise_on_failure=False)


def main() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTTV2_")}  # the embedded default
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "sdk"), env.get("PYTHONPATH")]))
    LOGS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    console.print(f"[bold]cttv2 demo[/]: API on http://127.0.0.1:{port}, state in {ROOT / '.state'}, logs in {LOGS}")
    subprocess.run([sys.executable, "-m", "cttv2_cli", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    procs = [start(["serve", "--port", str(port)], LOGS / "api.log", env),
             start(["worker"], LOGS / "worker.log", env)]
    try:
        token = subprocess.run([sys.executable, "-m", "cttv2_cli", "admin", "create-user",
                                f"demo-{uuid.uuid4().hex[:6]}"], cwd=ROOT, env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        with Client(f"http://127.0.0.1:{port}", token) as client:
            wait_ready(client, procs)
            pre = run(client, EXAMPLES / "demo-pretrain.yaml", "pretrain (digital, digits 0-4)")
            if pre.status != "succeeded":
                raise SystemExit(f"demo: pretraining {pre.status}: {pre.error}")
            # Transfer: start from the pretrained weights, learn the five digits it never saw.
            start_from = {"model.pretrained": {"job": pre.id}, "data.classes": [5, 6, 7, 8, 9],
                          "data.num_classes": None}
            analog = run(client, EXAMPLES / "demo-job.yaml", "fine-tune c-TTv2 (analog, digits 5-9)", **start_from)
            digital = run(client, EXAMPLES / "demo-job.yaml", "fine-tune digital baseline (fp)", algorithm="fp",
                          **start_from, **{"training.lr": 0.001, "name": "demo-finetune-fp"})

        table = Table(title="cttv2 demo: transfer learning a Swin on digits")
        for col in ("job", "algorithm", "status", "test accuracy", "wall time"):
            table.add_column(col)
        for job in (pre, analog, digital):
            res = job.result
            acc = f"{100 * res.test_accuracy:.1f}%" if res and res.test_accuracy is not None else "-"
            wall = f"{res.wall_s:.0f}s" if res and res.wall_s is not None else "-"
            table.add_row(str(job.id), job.algorithm or "-", job.status, acc, wall)
        console.print(table)
        if analog.status != "succeeded" or digital.status != "succeeded":
            raise SystemExit("demo: a fine-tuning job did not succeed")
    except CTTV2Error as exc:
        raise SystemExit(f"demo: {exc}") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        console.print("stopped the API and the worker")


LOGS = ROOT / ".state" / "demo-logs"

if __name__ == "__main__":
    main()
