"""The progress display `wait` shows: a rich bar in a terminal (or in a notebook with ipywidgets),
else one self-rewriting text line (terminals and notebooks both honour '\\r'), and nothing when
output goes to a file or pipe unless asked for."""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Protocol

from cttv2_client.models import Job, Sweep

if TYPE_CHECKING:
    from rich.console import Console


def in_notebook() -> bool:
    try:
        shell = get_ipython().__class__.__name__  # type: ignore[name-defined]
    except NameError:
        return False
    return shell == "ZMQInteractiveShell" or "google.colab" in shell


def interactive(stream: IO[str] | None = None) -> bool:
    stream = stream or sys.stderr
    return in_notebook() or bool(getattr(stream, "isatty", lambda: False)())


class Display(Protocol):
    def update(self, item: Job | Sweep) -> None: ...
    def close(self) -> None: ...


class NoDisplay:
    def update(self, item: Job | Sweep) -> None:
        pass

    def close(self) -> None:
        pass


def describe(item: Job | Sweep) -> tuple[str, float | None, float | None]:
    """(text, completed, total) for a job or a sweep."""
    if isinstance(item, Sweep):
        c = item.counts
        finished = c.succeeded + c.failed + c.cancelled
        text = f"{item.status}  {finished}/{item.total_jobs} jobs done"
        if c.failed:
            text += f", {c.failed} failed"
        return text, float(finished), float(item.total_jobs or 0) or None
    p = item.progress
    text = str(item.status)
    if p is not None and p.epoch is not None:
        text += f"  epoch {p.epoch}/{p.epochs}"
        if p.images_per_s:
            text += f"  {p.images_per_s:.0f} img/s"
        if p.eta_s is not None and item.status == "running":
            text += f"  ETA {p.eta_s:.0f}s"
    if item.done and item.result is not None and item.result.test_accuracy is not None:
        text += f"  test accuracy {100 * item.result.test_accuracy:.1f}%"
    if p is None or p.total_steps is None:
        return text, None, None
    return text, float(p.step or 0), float(p.total_steps)


class TextDisplay:
    """One line, rewritten in place with '\\r' when the stream is interactive, else a new line
    only when the text changes (log files stay short)."""

    def __init__(self, label: str, stream: IO[str] | None = None, rewrite: bool | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.rewrite = interactive(self.stream) if rewrite is None else rewrite
        self._last = ""
        self._width = 0

    def update(self, item: Job | Sweep) -> None:
        text, done, total = describe(item)
        bar = ""
        if total:
            filled = int(20 * min(1.0, (done or 0) / total))
            bar = f" [{'#' * filled}{'.' * (20 - filled)}] {100 * (done or 0) / total:3.0f}%"
        line = f"{self.label}{bar}  {text}"
        if line == self._last:
            return
        self._last = line
        if self.rewrite:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.rewrite and self._last:
            self.stream.write("\n")
            self.stream.flush()


class RichDisplay:
    def __init__(self, label: str, console: Console | None = None) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(label, total=None, info="")
        self._progress.start()

    @property
    def console(self) -> Console:
        return self._progress.console

    def update(self, item: Job | Sweep) -> None:
        text, done, total = describe(item)
        if total:
            self._progress.update(self._task, total=total, completed=done, info=text)
        else:
            self._progress.update(self._task, info=text)

    def close(self) -> None:
        self._progress.stop()


def make_display(label: str, enabled: bool | None = None) -> Display:
    """enabled None: show a display only when attached to a terminal or a notebook."""
    if enabled is False or (enabled is None and not interactive()):
        return NoDisplay()
    if _rich_usable():
        from rich.console import Console

        return RichDisplay(label, console=Console(stderr=True))
    return TextDisplay(label)


def _rich_usable() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    if in_notebook():  # rich's live display in Jupyter needs ipywidgets
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            return False
    return True
