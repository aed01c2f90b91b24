from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

from cttv2_engine.spec import Algorithm, DeviceSpec, JobSpecFields, StrictModel
from service.jobs.models import JobPriorityName, JobStatusName

MAX_TAGS = 20
MAX_NOTES = 10_000
TAG_PATTERN = r"^[A-Za-z0-9_.:/-]{1,64}$"
JobTagName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=TAG_PATTERN),
    Field(description="1-64 letters, digits and - _ . : /"),
]


def _unique_tags(tags: list[str]) -> list[str]:
    """Duplicates dropped (the first kept, order kept), then at most MAX_TAGS."""
    unique = list(dict.fromkeys(tags))
    if len(unique) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags (got {len(unique)})")
    return unique


# A list field, bounded twice: the raw list (a repeated tag counts once, up to a limit) and
# the tags left once duplicates are dropped.
JobTags = Annotated[
    list[JobTagName],
    Field(max_length=10 * MAX_TAGS, description=f"at most {MAX_TAGS} tags; duplicates dropped, order kept"),
    AfterValidator(_unique_tags),
]


def _no_nul(text: str | None) -> str | None:
    if text is not None and "\x00" in text:  # PostgreSQL cannot store it
        raise ValueError("must not contain NUL characters")
    return text


JobNotes = Annotated[str | None, Field(max_length=MAX_NOTES, description="free text"), AfterValidator(_no_nul)]


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

    # Not part of the job spec either: the user's labels (PATCH /v1/jobs/{id} edits them).
    tags: JobTags = Field(default_factory=list)
    notes: JobNotes = None

    # The request's fields that are not part of the job spec it describes.
    NOT_SPEC: ClassVar[frozenset[str]] = frozenset({"resume_from", "priority", "tags", "notes"})


class JobUpdate(StrictModel):
    """PATCH /v1/jobs/{id}: only the fields given change (tags replace the job's tags; null
    or [] removes them; notes null or "" removes them)."""

    tags: JobTags | None = None
    notes: JobNotes = None


def _utc(value: datetime | None) -> datetime | None:
    """The time in UTC; one without a zone is UTC already (every stored time is)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00
        raise ValueError("out of range") from None


class JobFilters(BaseModel):
    """What GET /v1/jobs narrows the list to; every filter is optional and they combine with
    AND. The query parameters of the same names (FastAPI reads them into this model); other
    callers build one directly, e.g. JobFilters(status="failed", name="reram-")."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: JobStatusName | None = Field(None, description="jobs in this status")
    tag: JobTagName | None = Field(None, description="jobs having this tag")
    name: Annotated[str | None, AfterValidator(_no_nul)] = Field(
        None, min_length=1, max_length=200, description="jobs whose name starts with this (case-sensitive)"
    )
    sweep: int | None = Field(None, ge=1, le=2_147_483_647, description="jobs of this sweep (its id)")
    algorithm: Algorithm | None = Field(None, description="jobs of this algorithm")
    created_after: Annotated[datetime | None, AfterValidator(_utc)] = Field(
        None, description="jobs created at or after this time (ISO 8601; no zone: UTC)"
    )
    created_before: Annotated[datetime | None, AfterValidator(_utc)] = Field(
        None, description="jobs created before this time (ISO 8601; no zone: UTC)"
    )


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
    tags: list[str]
    notes: str | None
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
        """From a Job, or a row of its columns (a Row's mapping copies in C; extra keys are
        ignored)."""
        mapping = getattr(job, "_mapping", None)
        if mapping is not None:
            data = dict(mapping)
        else:
            data = {name: getattr(job, name) for name in cls.model_fields if name != "error"}
        data["error"] = JobError(code=job.error_code or "error", message=job.error) if job.error else None
        data["tags"] = job.tags or []
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
