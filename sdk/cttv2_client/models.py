"""Typed views of the API's JSON (see the API contract). Every model keeps fields it does not
know (extra="allow"), so a newer server never breaks an older client; job specs stay plain dicts
because the server is the one that validates them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict


class _StatusEnum(str, Enum):
    """A status name that is also the plain string the server sends: it compares, hashes,
    prints and formats as its value (`job.status == "succeeded"`, f"{job.status}",
    {"succeeded": ...}[job.status] all work as with a str)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return str(self.value).__format__(spec)


class JobStatus(_StatusEnum):
    """A job's status: queued -> running -> succeeded | failed | cancelled (a running job whose
    worker was lost goes back to queued and resumes from its checkpoint)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for the statuses a job ends in."""
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class SweepStatus(_StatusEnum):
    """A sweep's status, derived by the server from its jobs': queued (none started), running,
    then once every job is done: succeeded (all), partial (some succeeded), failed or cancelled
    (none succeeded). The job statuses plus `partial`."""

    QUEUED = JobStatus.QUEUED.value
    RUNNING = JobStatus.RUNNING.value
    SUCCEEDED = JobStatus.SUCCEEDED.value
    PARTIAL = "partial"
    FAILED = JobStatus.FAILED.value
    CANCELLED = JobStatus.CANCELLED.value

    @property
    def terminal(self) -> bool:
        """True once no job of the sweep is queued or running."""
        return self not in (SweepStatus.QUEUED, SweepStatus.RUNNING)


# Derived from the enums: the statuses are named once, above.
TERMINAL_JOB_STATUSES = tuple(s for s in JobStatus if s.terminal)
ACTIVE_JOB_STATUSES = tuple(s for s in JobStatus if not s.terminal)
TERMINAL_SWEEP_STATUSES = tuple(s for s in SweepStatus if s.terminal)
ACTIVE_SWEEP_STATUSES = tuple(s for s in SweepStatus if not s.terminal)

S = TypeVar("S", bound=_StatusEnum)


def parse_status(enum: type[S], value: Any) -> S | str:
    """The enum member for a known status name; any other string is kept as it is, so a status
    added by a newer server does not break parsing (it is then a plain str, not a member)."""
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        if isinstance(value, str):
            return value
        raise


def _job_status(value: Any) -> JobStatus | str:
    return parse_status(JobStatus, value)


def _sweep_status(value: Any) -> SweepStatus | str:
    return parse_status(SweepStatus, value)


# A JobStatus member, or the raw string of a status this client does not know (a newer server's).
JobStatusValue = Annotated[JobStatus | str, BeforeValidator(_job_status)]
# A SweepStatus member, or the raw string of a status this client does not know.
SweepStatusValue = Annotated[SweepStatus | str, BeforeValidator(_sweep_status)]


class APIModel(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Progress(APIModel):
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    updated_at: datetime | None = None

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)


class JobErrorInfo(APIModel):
    code: str = "error"
    message: str = ""


class JobResult(APIModel):
    test_accuracy: float | None = None
    test_error: float | None = None
    test_loss: float | None = None
    train_loss: float | None = None
    best_epoch: int | None = None
    wall_s: float | None = None
    environment: dict[str, Any] = {}
    history: list[dict[str, Any]] = []


class Job(APIModel):
    """A training job. `status` is a JobStatus (a str enum: compare it with JobStatus.SUCCEEDED
    or "succeeded" alike); a status this client does not know, from a newer server, is kept
    as the plain string the server sent instead of failing to parse."""

    id: int
    name: str | None = None
    status: JobStatusValue
    algorithm: str | None = None
    spec: dict[str, Any] = {}
    device_spec_id: int | None = None
    sweep_id: int | None = None
    sweep_point: dict[str, Any] | None = None
    is_baseline: bool = False
    priority: str = "normal"  # low | normal | high (high: admins only)
    tags: list[str] = []
    notes: str | None = None
    resume_from: dict[str, Any] | None = None
    rerun_of: int | None = None
    attempt: int = 0
    cancel_requested: bool = False
    progress: Progress | None = None
    result: JobResult | None = None
    error: JobErrorInfo | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True once the job has reached a terminal status."""
        return self.status in TERMINAL_JOB_STATUSES


class DeviceSpecRecord(APIModel):
    id: int
    name: str | None = None
    spec: dict[str, Any] = {}
    created_at: datetime | None = None


class Weights(APIModel):
    id: int
    name: str
    arch: str | None = None
    img_size: int | None = None
    size: int | None = None
    sha256: str | None = None
    status: str = "pending"
    error: str | None = None
    created_at: datetime | None = None


class Event(APIModel):
    """One server-sent event: `event` is its kind (status, progress, metrics), `data` its JSON."""

    id: str | None = None
    event: str = "message"
    data: Any = None


class LogChunk(APIModel):
    lines: list[str] = []
    next_offset: int = 0
    done: bool = False


class Artifact(APIModel):
    name: str
    kind: str | None = None
    size: int | None = None
    sha256: str | None = None
    updated_at: datetime | None = None


class MetricPoint(APIModel):
    key: str
    step: int
    epoch: int | None = None
    value: float


class Metrics(APIModel):
    """A job's metric series, ordered by (step, key)."""

    items: list[MetricPoint] = []

    def __iter__(self) -> Iterator[MetricPoint]:  # type: ignore[override]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def keys(self) -> list[str]:
        return sorted({m.key for m in self.items})

    def series(self, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one metric."""
        return [(m.step, m.value) for m in self.items if m.key == key]

    def last(self, key: str) -> float | None:
        values = self.series(key)
        return values[-1][1] if values else None

    def to_pandas(self, wide: bool = True) -> Any:  # a pandas.DataFrame; pandas is optional
        """A DataFrame (needs pandas): one row per step with a column per metric (wide), or
        the long form with columns key, step, epoch, value."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas needs pandas: pip install 'cttv2-client[pandas]'") from None
        long = pd.DataFrame(
            [m.model_dump(include={"key", "step", "epoch", "value"}) for m in self.items],
            columns=["key", "step", "epoch", "value"],
        )
        if not wide:
            return long
        table = long.pivot_table(index="step", columns="key", values="value", aggfunc="last")
        table.columns.name = None
        epochs = long.groupby("step")["epoch"].last()
        table.insert(0, "epoch", epochs.reindex(table.index))
        return table


class SweepCounts(APIModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class Sweep(APIModel):
    """A sweep. `status` is a SweepStatus (a str enum, like Job.status); a status this client
    does not know, from a newer server, is kept as the plain string the server sent."""

    id: int
    name: str | None = None
    status: SweepStatusValue
    counts: SweepCounts = SweepCounts()
    total_jobs: int = 0
    request: dict[str, Any] = {}
    created_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True once no job of the sweep is queued or running."""
        return self.status not in ACTIVE_SWEEP_STATUSES


class BaselineStats(APIModel):
    """The digital baseline's final test error over its seeds."""

    point: dict[str, Any] = {}  # values of the swept axes that apply to the baseline
    mean_test_error: float | None = None  # over the finished seeds; None before the first
    std_test_error: float | None = None  # sample std (ddof 1); None below 2 finished seeds
    n_finished: int = 0  # seeds that succeeded
    n_pending: int = 0  # seeds still queued or running
    n_seeds: int = 0
    training: dict[str, Any] | None = None  # {"lr", "epochs"} the baseline trained with


class ReportRow(APIModel):
    """One grid point: its final test error over the seeds, against its baseline's."""

    point: dict[str, Any] = {}  # axis path -> value
    mean_test_error: float | None = None  # over the finished seeds; None before the first
    std_test_error: float | None = None  # sample std (ddof 1); None below 2 finished seeds
    delta_vs_baseline: float | None = None  # mean_test_error - baseline_mean_test_error
    baseline_mean_test_error: float | None = None  # the mean of this point's baseline
    n_finished: int = 0  # seeds that succeeded
    n_pending: int = 0  # seeds still queued or running
    n_seeds: int = 0
    knobs: list[str] | None = None  # one_at_a_time: the knobs whose curve holds this point


class NotApplicable(APIModel):
    """An (algorithm, knob) pair the sweep planned around: the knob does not apply to the
    algorithm (e.g. device.transfer_noise with sgd), so those points have no row."""

    algorithm: str
    knob: str
    reason: str = ""


# The statistics columns of a report row, in the server's CSV order.
REPORT_STAT_COLUMNS = (
    "mean_test_error",
    "std_test_error",
    "delta_vs_baseline",
    "baseline_mean_test_error",
    "n_finished",
    "n_pending",
    "n_seeds",
)


class SweepReport(APIModel):
    """Mean final test error per grid point against the digital baseline (every field the
    server's GET /v1/sweeps/{id}/report sends)."""

    sweep_id: int
    name: str | None = None
    complete: bool = False  # False while any job is queued or running
    pending: int = 0  # jobs still queued or running
    total_jobs: int = 0
    axes: list[str] = []
    mode: str = "grid"  # or "one_at_a_time"
    knobs: list[str] = []  # the axes other than algorithm and the crossed ones
    crossed: list[str] = []  # one_at_a_time: the axes crossed with every knob setting
    reference: dict[str, Any] | None = None  # one_at_a_time: each knob's reference (first) value
    not_applicable: list[NotApplicable] = []  # (algorithm, knob) pairs planned around
    baseline: BaselineStats | None = None  # the one baseline, when no swept axis changes the task
    baselines: list[BaselineStats] = []  # one per value of the axes that apply to the baseline
    rows: list[ReportRow] = []

    def to_pandas(self) -> Any:  # a pandas.DataFrame; pandas is optional
        """One row per grid point, as the server's CSV: a column per axis, then the statistics
        (REPORT_STAT_COLUMNS), then in one_at_a_time mode `knobs` (a list). Needs pandas."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            raise ImportError("to_pandas needs pandas: pip install 'cttv2-client[pandas]'") from None
        extra = ["knobs"] if self.mode == "one_at_a_time" else []
        columns = [*self.axes, *REPORT_STAT_COLUMNS, *extra]
        return pd.DataFrame(
            [
                {
                    **{a: r.point.get(a) for a in self.axes},
                    **{c: getattr(r, c) for c in (*REPORT_STAT_COLUMNS, *extra)},
                }
                for r in self.rows
            ],
            columns=columns,
        )
