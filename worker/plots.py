"""curves.png: a finished job's loss and accuracy per epoch, drawn from its metric series,
with the digital baseline of its sweep (same seed) dashed when that has finished.

The baseline may finish after the analog job, so when a baseline finishes the curves of its
finished sweep mates are drawn again (and re-registered, so the stored sha256 stays right).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cttv2_engine.files import atomic_write
from service.artifacts.store import get_store, job_key
from service.core.config import Settings
from service.jobs.models import Job, JobMetric, JobStatus
from worker import artifacts
from worker.db import with_retry

log = logging.getLogger("cttv2.worker.plots")

CURVES = "curves.png"
LOSS_KEYS = ("train_loss", "test_loss")
ACCURACY_KEY = "test_accuracy"

Series = dict[str, list[tuple[int, float]]]  # key -> [(epoch, value)] in step order


def _seed(job: Job) -> int | None:
    point = job.sweep_point or {}
    if "seed" in point:
        return point["seed"]
    return ((job.spec or {}).get("training") or {}).get("seed")


def _series(session: Session, job_id: int) -> Series:
    rows = session.execute(
        select(JobMetric.key, JobMetric.epoch, JobMetric.step, JobMetric.value)
        .where(JobMetric.job_id == job_id, JobMetric.key.in_((*LOSS_KEYS, ACCURACY_KEY)))
        .order_by(JobMetric.step)
    ).all()
    out: Series = {}
    for key, epoch, step, value in rows:
        out.setdefault(key, []).append((epoch if epoch is not None else step, value))
    return out


def _baseline(session: Session, job: Job) -> Job | None:
    """The succeeded digital baseline of the job's sweep with the same seed, if any."""
    if job.sweep_id is None or job.is_baseline:
        return None
    candidates = session.scalars(
        select(Job)
        .where(Job.sweep_id == job.sweep_id, Job.is_baseline.is_(True), Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.id)
    )
    return next((b for b in candidates if _seed(b) == _seed(job)), None)


def render(path: Path, series: Series, baseline: Series | None, title: str) -> None:
    """Two panels (loss, test accuracy) per epoch; the baseline dashed, in the same colours."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 3.6), dpi=100)
    loss_ax, acc_ax = fig.subplots(1, 2)
    colours = {"train_loss": "tab:blue", "test_loss": "tab:orange", ACCURACY_KEY: "tab:green"}
    for ax, keys in ((loss_ax, LOSS_KEYS), (acc_ax, (ACCURACY_KEY,))):
        for key in keys:
            for data, style, suffix in ((series, "-", ""), (baseline or {}, "--", " (digital baseline)")):
                points = data.get(key)
                if points:
                    x, y = zip(*points)
                    ax.plot(
                        x,
                        y,
                        style,
                        marker="o" if style == "-" else None,
                        markersize=3,
                        color=colours[key],
                        label=key.replace("_", " ") + suffix,
                    )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    loss_ax.set_ylabel("loss")
    acc_ax.set_ylabel("test accuracy")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_write(path) as tmp:  # a download in progress keeps reading the old file
        fig.savefig(tmp, format="png")


def write_curves(settings: Settings, job_id: int) -> bool:
    """Draw the job's curves.png; returns whether a baseline was drawn."""

    def load(session: Session):
        job = session.get_one(Job, job_id)
        base = _baseline(session, job)
        return job, _series(session, job_id), (_series(session, base.id) if base else None), base

    job, series, baseline, base = with_retry(load, what="curves data")
    title = f"job {job.id}" + (f" ({job.name})" if job.name else "") + f": {job.algorithm}"
    if base is not None:
        title += f" vs digital baseline (job {base.id})"
    target = get_store(settings).local_path(job_key(job_id, CURVES))
    target.parent.mkdir(parents=True, exist_ok=True)
    render(target, series, baseline, title)
    return base is not None


def _redraw_and_register(settings: Settings, job_id: int) -> None:
    """Another (finished) job's curves.png, drawn again here and put in the store."""
    store = get_store(settings)
    write_curves(settings, job_id)
    path = store.local_path(job_key(job_id, CURVES))
    try:
        info = artifacts.publish(store, job_id, path, "plot")
    finally:
        if not store.is_local:
            path.unlink(missing_ok=True)  # a scratch copy of a job this worker does not run
    with_retry(lambda s: artifacts.upsert(s, job_id, info), what="register curves")


def after_finish(settings: Settings, job_id: int, drew_baseline: bool) -> None:
    """Once the job is marked succeeded: a baseline redraws its sweep mates (same seed); an
    analog job whose baseline finished meanwhile redraws itself. Between the two, a baseline
    and an analog job finishing at the same moment still end up drawn together."""

    def peers(session: Session) -> tuple[list[int], bool]:
        job = session.get(Job, job_id)
        if job is None or job.sweep_id is None:
            return [], False
        if not job.is_baseline:
            return [], _baseline(session, job) is not None
        mates = session.scalars(
            select(Job).where(
                Job.sweep_id == job.sweep_id, Job.is_baseline.is_(False), Job.status == JobStatus.SUCCEEDED
            )
        )
        return [m.id for m in mates if _seed(m) == _seed(job)], False

    try:
        mates, baseline_now = with_retry(peers, deadline_s=60, what="curves peers")
    except Exception as exc:  # noqa: BLE001 - a plot is never worth failing over
        log.warning("could not look up curves to redraw after job %s: %s", job_id, exc)
        return
    if baseline_now and not drew_baseline:
        mates = [job_id]
    for mate in mates:
        try:
            _redraw_and_register(settings, mate)
        except Exception as exc:  # noqa: BLE001 - a plot is never worth failing over
            log.warning("could not redraw curves of job %s: %s", mate, exc)
