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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path[:0] = [str(ROOT), str(ROOT / "sdk")]  # run from a checkout without installing the SDK

import yaml
from cttv2_client import Client, CTTV2Error, Job

from cttv2_engine.presets import digital_baseline_training

console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    fh = open(log, "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "cttv2_cli", *args],
        cwd=ROOT,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(client: Client, procs: list[subprocess.Popen], logs: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not client.ready():
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"a server process exited early (see {logs})")
        if time.monotonic() > deadline:
            raise SystemExit("the API did not become ready")
        time.sleep(0.3)


@contextmanager
def embedded_stack(name: str, logs: Path, workers: int = 1, state: Path | None = None) -> Iterator[Client]:
    """The API and `workers` workers on the embedded default (SQLite + filesystem broker under
    `state`, default ./.state) and a new user; a client signed in as that user. Stops what it
    started on exit. Two stacks at once need two state folders: a shared queue would hand one
    stack's jobs to the other's workers, whatever code version each runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTTV2_")}  # the embedded default
    state = state or ROOT / ".state"
    env["CTTV2_STATE_DIR"] = str(state)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "sdk"), env.get("PYTHONPATH")]))
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    console.print(f"[bold]cttv2 {name}[/]: API on http://127.0.0.1:{port}, state in {state}, logs in {logs}")
    subprocess.run(
        [sys.executable, "-m", "cttv2_cli", "db", "upgrade"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )
    procs = [start(["serve", "--port", str(port)], logs / "api.log", env)]
    procs += [
        start(
            ["worker"] + (["--name", f"{name}-{i}"] if workers > 1 else []),
            logs / (f"worker-{i}.log" if workers > 1 else "worker.log"),
            env,
        )
        for i in range(workers)
    ]
    try:
        token = subprocess.run(
            [sys.executable, "-m", "cttv2_cli", "admin", "create-user", f"{name}-{uuid.uuid4().hex[:6]}"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        with Client(f"http://127.0.0.1:{port}", token) as client:
            wait_ready(client, procs, logs)
            console.print(
                f"[bold]dashboard[/]: http://127.0.0.1:{port}/ui  (sign in with the token {token} ; after the "
                f"demo, `.venv/bin/cttv2 serve --port {port}` serves it again with the same jobs)"
            )
            yield client
            if sys.stdin.isatty() and os.environ.get("CI") != "true":
                console.print(f"the dashboard stays up at http://127.0.0.1:{port}/ui : press Enter to stop")
                try:
                    input()
                except (EOFError, KeyboardInterrupt):
                    pass
    except CTTV2Error as exc:
        raise SystemExit(f"{name}: {exc}") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        console.print("stopped the API and the worker" + ("s" if workers > 1 else ""))


def run(client: Client, path: Path, label: str, **overrides) -> Job:
    """Submit a job file with overrides and follow it with a progress bar until it ends."""
    job = client.jobs.submit(path, overrides=overrides)
    return client.jobs.wait(job.id, progress_bar=True, label=label, raise_on_failure=False)


def pretrain(client: Client, arch: str | None = None) -> Job:
    """The small Swin (or `arch`), pretrained digitally on digits 0-4: what the demo and the
    studies fine-tune."""
    overrides = {"model.arch": arch, "name": f"pretrain-{arch}"} if arch else {}
    pre = run(client, EXAMPLES / "demo-pretrain.yaml", f"pretrain {arch or ''} (digital, digits 0-4)", **overrides)
    if pre.status != "succeeded":
        raise SystemExit(f"pretraining {pre.status}: {pre.error}")
    return pre


def main() -> None:
    with embedded_stack("demo", ROOT / ".state" / "demo-logs") as client:
        pre = pretrain(client)
        # Transfer: start from the pretrained weights, learn the five digits it never saw.
        start_from = {"model.pretrained": {"job": pre.id}, "data.classes": [5, 6, 7, 8, 9], "data.num_classes": None}
        analog = run(client, EXAMPLES / "demo-job.yaml", "fine-tune c-TTv2 (analog, digits 5-9)", **start_from)
        # The digital baseline as the sweeps train it: AdamW at the fp recipe's lr, twice the
        # analog job's epochs (trained to convergence, not to the analog budget).
        job_training = yaml.safe_load((EXAMPLES / "demo-job.yaml").read_text())["training"]
        baseline = digital_baseline_training(job_training)
        digital = run(
            client,
            EXAMPLES / "demo-job.yaml",
            f"fine-tune digital baseline (fp, {baseline['epochs']} epochs)",
            algorithm="fp",
            **start_from,
            **{"training.lr": baseline["lr"], "training.epochs": baseline["epochs"], "name": "demo-finetune-fp"},
        )

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
        gap = 100 * (analog.result.test_accuracy - digital.result.test_accuracy)
        console.print(
            f"c-TTv2 (analog) minus digital fine-tuning: [bold]{gap:+.1f} points[/] of test accuracy "
            f"({'analog ahead' if gap > 0 else 'digital ahead' if gap < 0 else 'equal'}; one seed: "
            "the study in docs/study.md gives the mean over seeds)"
        )


if __name__ == "__main__":
    main()
