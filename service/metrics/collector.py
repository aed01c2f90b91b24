"""The metrics read from the database at scrape time: a prometheus_client custom collector, so
the database stays the truth and every API process reports the same figures.

Each scrape runs a handful of cheap queries (measured on PostgreSQL with 100,000 jobs: see the
README's Operations section):

- jobs by status: one GROUP BY over jobs.status;
- running jobs, their worker and heartbeat: the (status, heartbeat_at) index;
- the last DURATION_WINDOW finished jobs' run times: read backwards off the primary key;
- artifact count and bytes by kind: one GROUP BY over artifacts;
- the broker's queue depth (service.core.broker.queue_depth);
- claims, requeues and reaps, counted from the status events (service.jobs.lifecycle writes
  them: `running` is a claim; `queued` with a reason is a requeue, reason `worker_shutdown`
  or `worker_lost`; reason `worker_lost` is a reap, to `queued` or, at max_attempts,
  `failed`). Counting every event on every scrape would scan the whole events table, so each
  process keeps a running total up to an event id (`settled`: events older than
  SETTLE_S, whose transactions have long committed) and counts only the events after it at
  each scrape: a primary-key range. The first scrape of a process counts them all once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select

from service.artifacts.models import Artifact
from service.core import broker
from service.core.config import get_settings
from service.core.db import get_engine, utcnow
from service.jobs.models import TERMINAL_STATUSES, Job, JobEvent, JobStatus

log = logging.getLogger("cttv2.metrics")

DURATION_WINDOW = 1000  # finished jobs whose run time the duration quantiles cover
QUANTILES = (0.5, 0.9, 0.99, 1.0)
SETTLE_S = 300.0  # events older than this are counted once and remembered
REQUEUE_REASONS = ("worker_shutdown", "worker_lost")
WORKER_LOST = "worker_lost"


@dataclass
class EventCounts:
    claims: int = 0
    requeues: dict[str, int] = field(default_factory=dict)  # by reason
    reaped: dict[str, int] = field(default_factory=dict)  # by the status the reap set

    def add(self, other: EventCounts) -> EventCounts:
        out = EventCounts(self.claims + other.claims, dict(self.requeues), dict(self.reaped))
        for src, dst in ((other.requeues, out.requeues), (other.reaped, out.reaped)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
        return out


def count_status_events(conn: Connection, after_id: int, up_to_id: int | None = None) -> EventCounts:
    """Claims, requeues and reaps among the status events with after_id < id <= up_to_id."""
    status = JobEvent.data["status"].as_string()
    reason = JobEvent.data["reason"].as_string()
    q = select(status, reason, func.count()).where(JobEvent.kind == "status", JobEvent.id > after_id)
    if up_to_id is not None:
        q = q.where(JobEvent.id <= up_to_id)
    counts = EventCounts()
    for st, why, n in conn.execute(q.group_by(status, reason)):
        if st == JobStatus.RUNNING:
            counts.claims += n
        if st == JobStatus.QUEUED and why:
            counts.requeues[why] = counts.requeues.get(why, 0) + n
        if why == WORKER_LOST:
            counts.reaped[st] = counts.reaped.get(st, 0) + n
    return counts


class _Settled:
    """Per database: the status events up to `cursor`, counted once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_db: dict[str, tuple[int, EventCounts]] = {}

    def counts(self, conn: Connection, db_key: str) -> EventCounts:
        with self.lock:
            cursor, settled = self.by_db.get(db_key, (0, EventCounts()))
            cutoff = utcnow() - timedelta(seconds=SETTLE_S)
            new_cursor = conn.scalar(
                select(func.max(JobEvent.id)).where(JobEvent.id > cursor, JobEvent.created_at < cutoff)
            )
            if new_cursor is not None:
                settled = settled.add(count_status_events(conn, cursor, new_cursor))
                cursor = new_cursor
                self.by_db[db_key] = (cursor, settled)
        return settled.add(count_status_events(conn, cursor))


_settled = _Settled()


def _quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty list."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        settings = get_settings()
        up = GaugeMetricFamily("cttv2_database_up", "1 when the database answered this scrape's queries")
        try:
            with get_engine().connect() as conn:
                metrics = list(self._from_database(conn, settings.database_url))
        except Exception as exc:  # noqa: BLE001 - a scrape reports the outage, it does not fail
            log.warning("metrics: cannot read the database: %s", str(exc).splitlines()[0][:300] if str(exc) else exc)
            up.add_metric([], 0)
            metrics = []
        else:
            up.add_metric([], 1)
        yield up
        yield from metrics

        depth = broker.queue_depth(settings)
        if depth is not None:
            g = GaugeMetricFamily("cttv2_queue_depth", "run messages waiting in the broker's job queue")
            g.add_metric([], depth)
            yield g
        took = GaugeMetricFamily("cttv2_metrics_collect_seconds", "time this scrape spent reading database and broker")
        took.add_metric([], time.perf_counter() - start)
        yield took

    def _from_database(self, conn: Connection, db_key: str) -> Iterator[Metric]:
        by_status = dict(conn.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        jobs = GaugeMetricFamily("cttv2_jobs", "jobs by status", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs

        events = _settled.counts(conn, db_key)
        claims = CounterMetricFamily("cttv2_job_claims", "jobs claimed by a worker (queued -> running)")
        claims.add_metric([], events.claims)
        yield claims
        requeues = CounterMetricFamily(
            "cttv2_job_requeues", "running jobs put back in the queue, by reason", labels=["reason"]
        )
        for reason in sorted(set(REQUEUE_REASONS) | set(events.requeues)):
            requeues.add_metric([reason], events.requeues.get(reason, 0))
        yield requeues
        reaped = CounterMetricFamily(
            "cttv2_job_reaps",
            "running jobs taken back from a lost worker (stale heartbeat), by the status they got",
            labels=["status"],
        )
        for outcome in (JobStatus.QUEUED, JobStatus.FAILED):
            reaped.add_metric([outcome.value], events.reaped.get(outcome.value, 0))
        yield reaped

        yield from self._workers(conn)
        yield from self._durations(conn)

        art_count = GaugeMetricFamily("cttv2_artifacts", "artifact files, by kind", labels=["kind"])
        art_bytes = GaugeMetricFamily("cttv2_artifact_bytes", "bytes of artifact files, by kind", labels=["kind"])
        q = select(Artifact.kind, func.count(), func.coalesce(func.sum(Artifact.size), 0)).group_by(Artifact.kind)
        for kind, n, size in conn.execute(q):
            art_count.add_metric([kind], n)
            art_bytes.add_metric([kind], int(size))
        yield art_count
        yield art_bytes

    def _workers(self, conn: Connection) -> Iterator[Metric]:
        rows = conn.execute(
            select(Job.worker_id, Job.id, Job.heartbeat_at).where(Job.status == JobStatus.RUNNING).order_by(Job.id)
        ).all()
        heartbeat = GaugeMetricFamily(
            "cttv2_worker_last_heartbeat_timestamp_seconds",
            "a busy worker's last heartbeat (of its running job), Unix time",
            labels=["worker"],
        )
        current = GaugeMetricFamily(
            "cttv2_worker_current_job", "the id of the job a busy worker runs", labels=["worker"]
        )
        busy = GaugeMetricFamily("cttv2_workers_busy", "workers running a job")
        seen: dict[str, Any] = {}
        for worker, job_id, beat in rows:
            name = worker or "unknown"
            if name not in seen or (beat and (seen[name][1] is None or beat > seen[name][1])):
                seen[name] = (job_id, beat)
        for name, (job_id, beat) in sorted(seen.items()):
            if beat is not None:
                heartbeat.add_metric([name], beat.timestamp())
            current.add_metric([name], job_id)
        busy.add_metric([], len(seen))
        yield busy
        yield heartbeat
        yield current

    def _durations(self, conn: Connection) -> Iterator[Metric]:
        rows = conn.execute(
            select(Job.started_at, Job.finished_at)
            .where(Job.status.in_(TERMINAL_STATUSES), Job.started_at.is_not(None), Job.finished_at.is_not(None))
            .order_by(Job.id.desc())
            .limit(DURATION_WINDOW)
        ).all()
        durations = sorted(max(0.0, (end - begin).total_seconds()) for begin, end in rows if begin and end)
        window = GaugeMetricFamily(
            "cttv2_job_duration_window_jobs",
            f"finished jobs that ran (the last {DURATION_WINDOW} by id) in cttv2_job_duration_seconds",
        )
        window.add_metric([], len(durations))
        yield window
        g = GaugeMetricFamily(
            "cttv2_job_duration_seconds",
            f"run time (finished_at - started_at) of the last {DURATION_WINDOW} finished jobs that ran: quantiles",
            labels=["quantile"],
        )
        if durations:
            for q in QUANTILES:
                g.add_metric([str(q)], _quantile(durations, q))
        yield g
        mean = GaugeMetricFamily(
            "cttv2_job_duration_mean_seconds", f"mean run time of the last {DURATION_WINDOW} finished jobs that ran"
        )
        if durations:
            mean.add_metric([], sum(durations) / len(durations))
        yield mean
