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
import time
import uuid
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    fh = open(log, "wb")
    return subprocess.Popen([sys.executable, "-m", "cttv2_cli", *args], cwd=ROOT, env=env,
                            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(client: httpx.Client, procs: list[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"demo: a server process exited early (see {LOGS})")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("demo: the API did not become ready")


def follow(client: httpx.Client, job_id: int, label: str) -> dict:
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(label, total=None, info="queued")
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            p = job.get("progress") or {}
            if p:
                info = f"epoch {p['epoch']}/{p['epochs']}  {p['images_per_s']:.0f} img/s"
                if p.get("eta_s") is not None and job["status"] == "running":
                    info += f"  ETA {p['eta_s']:.0f}s"
                bar.update(task, total=p["total_steps"], completed=p["step"], info=info)
            else:
                bar.update(task, info=job["status"])
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.5)


def submit(client: httpx.Client, path: Path, **override) -> int:
    body = yaml.safe_load(path.read_text())
    for key, value in override.items():
        node = body
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    r = client.post("/v1/jobs", json=body)
    if r.status_code != 201:
        raise SystemExit(f"demo: submit failed: {r.json()['error']['message']}")
    return r.json()["id"]


def main() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTTV2_")}  # the embedded default
    env["PYTHONUNBUFFERED"] = "1"
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
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                              timeout=30)
        wait_ready(client, procs)

        pre = follow(client, submit(client, EXAMPLES / "demo-pretrain.yaml"), "pretrain (digital, digits 0-4)")
        if pre["status"] != "succeeded":
            raise SystemExit(f"demo: pretraining {pre['status']}: {pre.get('error')}")
        analog = follow(client, submit(client, EXAMPLES / "demo-job.yaml", **{"model.pretrained": {"job": pre["id"]}}),
                        "fine-tune c-TTv2 (analog, digits 5-9)")
        digital = follow(client, submit(client, EXAMPLES / "demo-job.yaml", algorithm="fp",
                                        **{"model.pretrained": {"job": pre["id"]}, "training.lr": 0.001,
                                           "name": "demo-finetune-fp"}),
                         "fine-tune digital baseline (fp)")

        table = Table(title="cttv2 demo: transfer learning a Swin on digits")
        for col in ("job", "algorithm", "status", "test accuracy", "wall time"):
            table.add_column(col)
        for job in (pre, analog, digital):
            res = job.get("result") or {}
            acc = f"{100 * res['test_accuracy']:.1f}%" if "test_accuracy" in res else "-"
            wall = f"{res['wall_s']:.0f}s" if "wall_s" in res else "-"
            table.add_row(str(job["id"]), job["algorithm"], job["status"], acc, wall)
        console.print(table)
        if analog["status"] != "succeeded" or digital["status"] != "succeeded":
            raise SystemExit("demo: a fine-tuning job did not succeed")
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
