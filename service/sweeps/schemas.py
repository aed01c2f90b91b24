from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from cttv2_engine.spec import StrictModel
from service.jobs.models import JobStatus
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
        None,
        min_length=1,
        max_length=1000,
        description="training.seed of each repetition (default: the base's seed)",
    )
    mode: Literal["grid", "one_at_a_time"] = Field(
        "grid",
        description="grid: one point per combination of the axes' values. one_at_a_time: the "
        "`algorithm` axis (if any) is crossed with everything as in grid mode, and every other "
        "axis (a knob) is varied alone while the other knobs stay at their REFERENCE value, the "
        'FIRST value listed for that axis. E.g. grid {"algorithm": [a, b], '
        '"device.transfer_noise": [0, 0.1, 0.2], "device.sp_skew": [0, 0.1]} plans, for '
        "each of a and b, transfer_noise 0, 0.1, 0.2 at sp_skew 0 and sp_skew 0.1 at "
        "transfer_noise 0 (4 points per algorithm, not 6): the reference point (every knob at "
        "its first value) is planned once and its jobs count for every knob's curve. "
        "A knob that does not apply to an algorithm (device.transfer_noise with sgd or "
        "mixed-precision, which have no transfer) is planned around instead of refused: in "
        "grid mode that algorithm's points are kept only where the knob is null; in "
        "one_at_a_time mode it gets only the reference point, without the knob unless its "
        "reference is null (see the report's not_applicable)",
    )
    crossed: list[AxisPath] = Field(
        default_factory=list,
        max_length=8,
        description="one_at_a_time mode: grid axes crossed with every knob setting, as the "
        'algorithm axis is (e.g. ["model", "data.classes"]: every knob\'s curve on every '
        "model and data subset); they are not knobs and have no reference value",
    )
    reference_only: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list,
        max_length=16,
        description="one_at_a_time mode: algorithms of the grid's algorithm axis planned at the "
        'reference point only (e.g. ["sgd"]: a method known to fail, shown at the reference '
        "device without its every curve)",
    )
    baseline: bool = Field(
        False,
        description="also run the digital baseline (algorithm fp, no device) once per seed (and "
        "per value of any swept axis that changes the task, such as data.num_classes); its "
        "training section is the engine's digital-baseline recipe applied to the base's "
        "(cttv2_engine.presets.digital_baseline_training: AdamW at the base's "
        "training.digital_lr, or the fp recipe's lr, for twice the base's epochs), then "
        "baseline_training",
    )
    baseline_training: dict[str, Any] | None = Field(
        None,
        max_length=32,
        description='training-section overrides for the digital baseline only, e.g. {"epochs": '
        '16, "lr": 0.005}; keys are training fields (not seed: the baseline runs once per seed)',
    )


class SweepCounts(BaseModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


PARTIAL = "partial"  # every job done, some succeeded
# A sweep's status is derived from its jobs' (sweeps.service.derive_status).
if TYPE_CHECKING:  # built at run time (see JobStatusName)
    SweepStatus = str
else:
    SweepStatus = Literal[(*(status.value for status in JobStatus), PARTIAL)]


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


class BaselineTraining(BaseModel):
    lr: float | None = Field(description="AdamW lr the baseline trained with (the fp default if unset)")
    epochs: int | None


class BaselineStats(BaseModel):
    point: dict[str, Any] = Field(description="values of the swept axes that apply to the baseline")
    mean_test_error: float | None = _mean()
    std_test_error: float | None = _std()
    n_finished: int = _n_finished()
    n_pending: int = _n_pending()
    n_seeds: int
    training: BaselineTraining | None = Field(
        None, description="how the baseline was trained (from its first job's spec)"
    )


class ReportRow(BaseModel):
    point: dict[str, Any] = Field(description="axis path -> value")
    mean_test_error: float | None = _mean()
    std_test_error: float | None = _std()
    delta_vs_baseline: float | None = Field(description="mean_test_error - its baseline's mean")
    baseline_mean_test_error: float | None
    n_finished: int = _n_finished()
    n_pending: int = _n_pending()
    n_seeds: int
    knobs: list[str] | None = Field(
        None,
        description="one_at_a_time mode: the axes whose curve this point belongs to (every knob "
        "at the reference point, else the one knob away from its first value); null in grid mode",
    )


class NotApplicable(BaseModel):
    algorithm: str
    knob: str = Field(description="the axis that does not apply to the algorithm")
    reason: str = Field(description="why, and what was planned instead")


class SweepReport(BaseModel):
    sweep_id: int
    name: str | None
    complete: bool = Field(description="false while any job is queued or running")
    pending: int = Field(description="jobs still queued or running")
    total_jobs: int
    axes: list[str]
    mode: Literal["grid", "one_at_a_time"] = "grid"
    knobs: list[str] = Field(
        default_factory=list, description="the axes other than algorithm (one curve each in one_at_a_time mode)"
    )
    crossed: list[str] = Field(
        default_factory=list, description="one_at_a_time mode: the axes crossed with every knob setting"
    )
    reference: dict[str, Any] | None = Field(
        None, description="one_at_a_time mode: each knob's reference (first) value; null in grid mode"
    )
    not_applicable: list[NotApplicable] = Field(
        default_factory=list,
        description="(algorithm, knob) pairs planned around because the knob does not apply to "
        "the algorithm: their points were not planned and have no row",
    )
    baseline: BaselineStats | None = Field(
        description="the baseline, when there is one and no swept axis changes the task"
    )
    baselines: list[BaselineStats] = Field(description="one per value of the axes that apply to it")
    rows: list[ReportRow]
