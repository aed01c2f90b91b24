from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from cttv2_engine.spec import StrictModel
from service.jobs.schemas import JobCreate

AxisPath = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class SweepCreate(StrictModel):
    """A study in one request: one job per grid point and seed, plus digital baselines."""

    name: str | None = Field(None, max_length=200)
    base: JobCreate = Field(description="the job every grid point starts from (POST /v1/jobs body)")
    grid: dict[AxisPath, Annotated[list[Any], Field(min_length=1, max_length=1000)]] = Field(
        default_factory=dict,
        max_length=16,
        description='dotted job-spec path -> values, e.g. {"device.transfer_noise": [0, 0.1], '
        '"algorithm": ["c-ttv2", "sgd"]}; one job per combination and seed',
    )
    axes: list[AxisPath] | None = Field(
        None,
        description="order of the grid's axes in the report and figure (default: the grid's key "
        "order as sent); the first non-algorithm axis is the x axis (or heatmap rows)",
    )
    seeds: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        None, min_length=1, max_length=1000,
        description="training.seed of each repetition (default: the base's seed)",
    )
    baseline: bool = Field(
        False,
        description="also run the digital baseline (algorithm fp, no device) once per seed (and "
        "per value of any swept axis that changes the task, such as data.num_classes); its "
        "lr is the base's training.digital_lr, or the fp default",
    )


class SweepCounts(BaseModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


SweepStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "partial"]


class SweepOut(BaseModel):
    id: int
    name: str | None
    status: SweepStatus
    counts: SweepCounts
    total_jobs: int
    request: dict[str, Any]
    created_at: datetime


def _mean():
    return Field(description="mean final test error over the finished seeds; null before the first")


def _std():
    return Field(description="sample std (ddof 1) over the finished seeds; null below 2")


def _n_finished():
    return Field(description="seeds that succeeded")


def _n_pending():
    return Field(description="seeds still queued or running")


class BaselineStats(BaseModel):
    point: dict[str, Any] = Field(description="values of the swept axes that apply to the baseline")
    mean_test_error: float | None = _mean()
    std_test_error: float | None = _std()
    n_finished: int = _n_finished()
    n_pending: int = _n_pending()
    n_seeds: int


class ReportRow(BaseModel):
    point: dict[str, Any] = Field(description="axis path -> value")
    mean_test_error: float | None = _mean()
    std_test_error: float | None = _std()
    delta_vs_baseline: float | None = Field(description="mean_test_error - its baseline's mean")
    baseline_mean_test_error: float | None
    n_finished: int = _n_finished()
    n_pending: int = _n_pending()
    n_seeds: int


class SweepReport(BaseModel):
    sweep_id: int
    name: str | None
    complete: bool = Field(description="false while any job is queued or running")
    pending: int = Field(description="jobs still queued or running")
    total_jobs: int
    axes: list[str]
    baseline: BaselineStats | None = Field(
        description="the baseline, when there is one and no swept axis changes the task"
    )
    baselines: list[BaselineStats] = Field(description="one per value of the axes that apply to it")
    rows: list[ReportRow]
