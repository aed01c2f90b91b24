"""`cttv2 train SPEC.yaml`: run one job spec locally with a progress bar.

Ctrl-C asks the engine to stop at the next batch boundary (it writes a checkpoint there, and
`--resume` continues exactly); a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from cttv2_cli.main import cli

EXIT_BAD_SPEC = 2
EXIT_FAILED = 1


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load_spec_file(path: Path) -> Any:
    """YAML -> JobSpec, with every problem reported as 'field: reason' lines."""
    import yaml
    from pydantic import ValidationError

    from cttv2_engine import SpecError, validate_spec_semantics

    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        _fail(f"{path.name} is not valid YAML: {str(exc).splitlines()[0]}", EXIT_BAD_SPEC)
    if not isinstance(raw, dict):
        _fail(f"{path.name} must hold a mapping (the job spec)", EXIT_BAD_SPEC)
    try:
        return validate_spec_semantics(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "spec"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"spec field {field}: {msg}")
        _fail("\n       ".join(lines), EXIT_BAD_SPEC)
    except SpecError as exc:
        _fail(f"spec field {exc}", EXIT_BAD_SPEC)


class _ConsoleCallbacks:
    """Engine callbacks drawing a rich progress bar; Ctrl-C becomes a graceful stop."""

    def __init__(self, progress: Any, console: Any) -> None:
        self.progress = progress
        self.console = console
        self.task = progress.add_task("training", total=None, speed="")
        self.stop_requested = False

    def on_progress(self, p: Any) -> None:
        self.progress.update(
            self.task,
            total=p.total_steps,
            completed=p.step,
            description=f"epoch {p.epoch}/{p.epochs}",
            speed=f"{p.images_per_s:.0f} img/s",
        )

    def on_metrics(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        pass  # the engine's epoch line (on_log) already shows them

    def on_checkpoint(self, path: Path, kind: str) -> None:
        pass

    def on_log(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False)

    def should_stop(self) -> bool:
        return self.stop_requested


@cli.command("train")
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), help="output dir (default: runs/<spec name>-<time>)"
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CTTV2_DATA_DIR",
    default=Path("data"),
    show_default=True,
    help="datasets (env CTTV2_DATA_DIR)",
)
@click.option(
    "--weights-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CTTV2_WEIGHTS_DIR",
    default=Path("weights"),
    show_default=True,
    help="pretrained weights by name (env CTTV2_WEIGHTS_DIR)",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), envvar="CTTV2_DEVICE", default="auto", show_default=True
)
@click.option(
    "--resume",
    "resume",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="continue from a checkpoint (e.g. WORKDIR/checkpoints/latest.pt)",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="torch threads (one per process is fastest on CPU)",
)
def train(
    spec_file: Path,
    workdir: Path | None,
    data_dir: Path,
    weights_dir: Path,
    device: str,
    resume: Path | None,
    threads: int,
) -> None:
    """Train one job spec (YAML) locally and print the result."""
    spec = load_spec_file(spec_file)
    if workdir is None:
        workdir = (
            resume.parent.parent if resume else Path("runs") / f"{spec_file.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        )

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from cttv2_engine import EngineError, RunContext, run

    console = Console(stderr=True)
    context = RunContext(
        data_dir=data_dir,
        weights_dir=weights_dir,
        compute=device,  # type: ignore[arg-type]
        num_threads=threads,
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps {task.fields[speed]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    callbacks = _ConsoleCallbacks(progress, console)

    def on_sigint(signum: int, frame: Any) -> None:
        if callbacks.stop_requested:
            raise KeyboardInterrupt
        callbacks.stop_requested = True
        console.print("stopping at the next batch (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with progress:
            result = run(spec, workdir=workdir, callbacks=callbacks, resume_from=resume, context=context)
    except EngineError as exc:
        _fail(str(exc), EXIT_FAILED)
    finally:
        signal.signal(signal.SIGINT, previous)

    final = result.final
    if result.status == "stopped":
        click.echo(f"stopped; resume with: cttv2 train {spec_file} --resume {workdir / 'checkpoints' / 'latest.pt'}")
        sys.exit(130)
    env = result.environment
    click.echo(
        f"completed on {env.get('device', '?')}: test accuracy "
        f"{100 * final.get('test_accuracy', float('nan')):.2f}% "
        f"(best {100 * final.get('best_test_accuracy', float('nan')):.2f}% at epoch "
        f"{final.get('best_epoch', '?')}), {final.get('wall_s', 0):.1f} s"
    )
    click.echo(f"outputs: {workdir} (weights.safetensors, result.json, checkpoints/)")
