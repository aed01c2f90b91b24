"""How jobs, progress, sizes and metric values look in a terminal (rich markup and tables)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cttv2_client import Job

if TYPE_CHECKING:
    from rich.table import Table


def when(dt: datetime | None) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S") if dt else "-"


def pct(value: float | None) -> str:
    return f"{100 * value:.1f}%" if value is not None else "-"


STATUS_STYLE = {"queued": "yellow", "running": "cyan", "succeeded": "green", "failed": "red", "cancelled": "magenta"}


def status_markup(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def progress_text(job: Job) -> str:
    p = job.progress
    if p is None or p.epoch is None:
        return "-"
    text = f"epoch {p.epoch}/{p.epochs}"
    if p.total_steps:
        text += f" ({100 * (p.step or 0) / p.total_steps:.0f}%)"
    return text


def jobs_table(jobs: list[Job], title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title)
    for col in ("id", "name", "status", "algorithm", "progress", "test acc", "tags", "created"):
        table.add_column(col, no_wrap=col in ("id", "status", "created"))
    for j in jobs:
        acc = j.result.test_accuracy if j.result else None
        table.add_row(
            str(j.id),
            j.name or "-",
            status_markup(j.status),
            j.algorithm or "-",
            progress_text(j),
            pct(acc),
            ",".join(j.tags) or "-",
            when(j.created_at),
        )
    return table


def job_panel(job: Job) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    cancel_note = " (cancel requested)" if job.cancel_requested and not job.done else ""
    rows: list[tuple[str, str]] = [
        ("job", f"{job.id}" + (f" ({job.name})" if job.name else "")),
        ("status", status_markup(job.status) + cancel_note),
        ("algorithm", job.algorithm or "-"),
        ("model", str(job.spec.get("model", {}).get("arch", "-"))),
        ("data", data_text(job.spec.get("data") or {})),
        ("progress", progress_text(job)),
    ]
    if job.result:
        r = job.result
        rows += [
            ("test accuracy", pct(r.test_accuracy)),
            ("test loss", f"{r.test_loss:.4f}" if r.test_loss is not None else "-"),
            ("wall time", f"{r.wall_s:.0f} s" if r.wall_s is not None else "-"),
        ]
    if job.error:
        rows.append(("error", f"[red]{job.error.code}[/]: {job.error.message}"))
    if job.sweep_id:
        rows.append(("sweep", f"{job.sweep_id} {json.dumps(job.sweep_point)}"))
    if job.tags:
        rows.append(("tags", ", ".join(job.tags)))
    if job.notes:
        rows.append(("notes", escape(job.notes)))  # the user's text, not markup
    rows += [
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("attempt", str(job.attempt)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


def data_text(data: dict[str, Any]) -> str:
    text = str(data.get("dataset", "-"))
    if data.get("classes") is not None:
        text += f" classes {data['classes']}"
    elif data.get("num_classes"):
        text += f" first {data['num_classes']} classes"
    return text


def summary_line(job: Job) -> str:
    text = f"job {job.id} {job.status}"
    if job.result and job.result.test_accuracy is not None:
        text += f": test accuracy {pct(job.result.test_accuracy)}"
    if job.error:
        text += f": {job.error.code}: {job.error.message}"
    return text


def metric_text(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    if key.endswith(("accuracy", "error")) and 0 <= value <= 1:
        return f"{100 * value:.1f}%"
    return f"{value:.4g}"


def size_text(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
