from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from cttv2_engine.spec import DeviceSpec, JobSpecFields, StrictModel
from service.jobs.models import JobPriorityName, JobStatusName


class DeviceSpecRef(StrictModel):
    id: int = Field(ge=1, le=2_147_483_647, description="a stored device spec (POST /v1/device-specs)")


def _device_kind(value: Any) -> str:
    # Tags are class names: the error formatter drops them from field paths.
    if isinstance(value, dict):
        return "DeviceSpecRef" if "id" in value else "DeviceSpec"
    return "DeviceSpecRef" if isinstance(value, DeviceSpecRef) else "DeviceSpec"


DeviceInput = Annotated[
    Annotated[DeviceSpec, Tag("DeviceSpec")] | Annotated[DeviceSpecRef, Tag("DeviceSpecRef")],
    Discriminator(_device_kind),
]


class ResumeFrom(StrictModel):
    job: int = Field(ge=1, le=2_147_483_647, description="an earlier job of yours")
    checkpoint: Literal["latest", "best"] = "latest"


class JobCreate(JobSpecFields):
    """A JobSpec whose device may also be given by id, plus where to resume from."""

    # JobSpec's checks across fields run once the device is resolved (jobs.service.resolve_spec).
    # Wider than JobSpecFields.device on purpose: a request may name a stored device by id.
    device: DeviceInput | None = Field(default_factory=DeviceSpec)  # type: ignore[assignment]
    resume_from: ResumeFrom | None = None
    # Not part of the job spec: how the queue orders the job (service.jobs.lifecycle.claim_next).
    priority: JobPriorityName = Field(
        "normal",
        description="the order of your own queued jobs: high, normal, low, then oldest first; "
        "high (admins only) also goes before other users' jobs",
    )

    # The request's fields that are not part of the job spec it describes.
    NOT_SPEC: ClassVar[frozenset[str]] = frozenset({"resume_from", "priority"})


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str | None
    status: JobStatusName
    algorithm: str
    spec: dict[str, Any]
    device_spec_id: int | None
    sweep_id: int | None
    sweep_point: dict[str, Any] | None
    is_baseline: bool
    priority: JobPriorityName
    resume_from: dict[str, Any] | None
    rerun_of: int | None
    attempt: int
    cancel_requested: bool
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: JobError | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, job) -> JobOut:
        data = {name: getattr(job, name) for name in cls.model_fields if name != "error"}
        data["error"] = JobError(code=job.error_code or "error", message=job.error) if job.error else None
        return cls.model_validate(data)


class MetricPoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    step: int
    epoch: int | None
    value: float


class MetricsOut(BaseModel):
    items: list[MetricPoint]


class LogsOut(BaseModel):
    lines: list[str]
    next_offset: int = Field(description="ask for this offset next")
    done: bool = Field(description="the job has ended and no lines are left")
