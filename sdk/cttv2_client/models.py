"""Typed views of the API's JSON (see the API contract). Every model keeps fields it does not
know (extra="allow"), so a newer server never breaks an older client; job specs stay plain dicts
because the server is the one that validates them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

TERMINAL_JOB_STATUSES = ("succeeded", "failed", "cancelled")


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
    id: int
    name: str | None = None
    status: str
    algorithm: str | None = None
    spec: dict[str, Any] = {}
    device_spec_id: int | None = None
    sweep_id: int | None = None
    sweep_point: dict[str, Any] | None = None
    is_baseline: bool = False
    priority: str = "normal"  # low | normal | high (high: admins only)
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
    id: int
    name: str | None = None
    status: str
    counts: SweepCounts = SweepCounts()
    total_jobs: int = 0
    request: dict[str, Any] = {}
    created_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True once no job of the sweep is queued or running."""
        return self.status not in ("queued", "running")


class BaselineStats(APIModel):
    mean_test_error: float | None = None
    std_test_error: float | None = None
    n_finished: int = 0
    n_seeds: int = 0
    training: dict[str, Any] | None = None  # {"lr", "epochs"} the baseline trained with


class ReportRow(APIModel):
    point: dict[str, Any] = {}
    mean_test_error: float | None = None
    std_test_error: float | None = None
    delta_vs_baseline: float | None = None
    n_finished: int = 0
    n_seeds: int = 0
    knobs: list[str] | None = None  # one_at_a_time: the knobs whose curve holds this point


class SweepReport(APIModel):
    sweep_id: int
    complete: bool = False
    axes: list[str] = []
    mode: str = "grid"  # or "one_at_a_time"
    knobs: list[str] = []  # the axes other than algorithm
    reference: dict[str, Any] | None = None  # one_at_a_time: each knob's reference (first) value
    baseline: BaselineStats | None = None
    rows: list[ReportRow] = []

    def to_pandas(self) -> Any:  # a pandas.DataFrame; pandas is optional
        """One row per grid point: a column per axis, then the statistics (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            raise ImportError("to_pandas needs pandas: pip install 'cttv2-client[pandas]'") from None
        stats = ("mean_test_error", "std_test_error", "delta_vs_baseline", "n_finished", "n_seeds")
        return pd.DataFrame(
            [{**{a: r.point.get(a) for a in self.axes}, **{s: getattr(r, s) for s in stats}} for r in self.rows],
            columns=[*self.axes, *stats],
        )
