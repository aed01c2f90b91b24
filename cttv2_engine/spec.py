"""The job spec: the one schema shared by the API, the worker, the CLI and the engine.

Pure pydantic, no torch: the API validates requests with these models and stores the
validated JSON as the job's snapshot; the worker hands the same JSON to ``engine.run``.

Every numeric field is range-checked here because aihwkit accepts nonsense silently
(``dw_min=0`` trains into NaN weights). Unknown fields are rejected everywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cttv2_engine import registry
from cttv2_engine.families import FAMILIES, DeviceFamily
from cttv2_engine.recipes import WEIGHT_SCALING_OMEGA

# Names users may write, each list defined once (device names: families.DeviceFamily); the
# tuples are derived. A device name reaches an aihwkit class only through the whitelist in
# cttv2_engine.devices: nothing is ever looked up by a user-typed name.
TransferAlgorithm = Literal["c-ttv2", "ttv2", "agad"]  # a fast tile, read in transfers
Algorithm = Literal[TransferAlgorithm, "sgd", "mixed-precision", "fp"]
DatasetName = Literal["cifar100", "cifar10", "digits", "imagefolder"]
TRANSFER_ALGORITHMS: tuple[str, ...] = get_args(TransferAlgorithm)
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
DATASETS: tuple[str, ...] = get_args(DatasetName)
# Plain names only: datasets and weights are looked up by name inside configured dirs.
MAX_EPOCHS = 10_000  # training.epochs; the digital baseline doubles epochs up to it
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceSpec(StrictModel):
    """How one analog memory cell behaves. Weights are in normalized units (w_max = 1 by default).

    ``None`` means "the family's own default" (listed by ``cttv2_engine.presets``).
    """

    family: DeviceFamily = Field("SoftBoundsReference", description="device model (whitelisted)")
    dw_min: float | None = Field(
        None, gt=0, le=1, description="mean weight change of one pulse (weight units); or give n_states"
    )
    n_states: int | None = Field(None, ge=2, le=100_000, description="number of states in [w_min, w_max]; sets dw_min")
    w_min: float | None = Field(None, ge=-10, lt=0, description="lower weight bound (weight units)")
    w_max: float | None = Field(None, gt=0, le=10, description="upper weight bound (weight units)")
    up_down: float | None = Field(None, ge=-1, le=1, description="up/down pulse asymmetry (0 = symmetric)")
    dw_min_dtod: float | None = Field(None, ge=0, le=2, description="device-to-device spread of dw_min (relative std)")
    w_max_dtod: float | None = Field(
        None, ge=0, le=2, description="device-to-device spread of the bounds (relative std)"
    )
    up_down_dtod: float | None = Field(
        None, ge=0, le=2, description="device-to-device spread of up_down (relative std)"
    )
    dw_min_std: float | None = Field(
        None, ge=0, le=5, description="cycle-to-cycle pulse-update noise (relative std of dw_min)"
    )
    write_noise_std: float | None = Field(None, ge=0, le=10, description="write noise std, relative to dw_min")
    sp_skew: float = Field(0.0, ge=-1, le=1, description="symmetry-point skew: mean SP shift (weight units)")
    sp_variability: float = Field(
        0.0, ge=0, le=1, description="symmetry-point variability: device-to-device std of the SP"
    )
    transfer_noise: float | None = Field(
        None,
        ge=0,
        le=2,
        description="std of additive noise on the reads of the fast tile during a transfer "
        "(output units, like out_noise); unset: the same as a forward read (out_noise)",
    )
    weight_scaling_omega: float | None = Field(
        None,
        gt=0,
        le=1,
        description="each layer's largest |weight| is mapped to this fraction of w_max, a fixed "
        f"digital output scale restores it (unset: {WEIGHT_SCALING_OMEGA})",
    )
    dac_bits: int | None = Field(None, ge=2, le=16, description="input (DAC) resolution in bits")
    adc_bits: int | None = Field(None, ge=2, le=16, description="output (ADC) resolution in bits")
    out_noise: float | None = Field(
        None, ge=0, le=2, description="std of additive output noise on forward/backward reads"
    )
    construction_seed: int = Field(
        0,
        ge=0,
        le=2**31 - 1,
        description="seed of the device-to-device parameters (0: derived from training.seed)",
    )
    deterministic: bool = Field(
        False,
        description="noise-free reads and deterministic pulses: bit-exact reproducible runs "
        "(for debugging and resume checks; not a realistic device)",
    )

    @model_validator(mode="after")
    def _check(self) -> DeviceSpec:
        if self.dw_min is not None and self.n_states is not None:
            raise ValueError("give either dw_min or n_states, not both")
        knobs = FAMILIES[self.family]["knobs"]
        for name in _DEVICE_KNOBS:
            value = getattr(self, name)
            if value is None or (name in ("sp_skew", "sp_variability") and value == 0):
                continue
            if name not in knobs:
                having = [f for f, info in FAMILIES.items() if name in info["knobs"]]
                raise ValueError(
                    f"{name} is not a parameter of family {self.family} (families that have it: {', '.join(having)})"
                )
        if self.deterministic:
            noisy = [
                name
                for name in ("dw_min_std", "write_noise_std", "out_noise", "transfer_noise", "dac_bits", "adc_bits")
                if getattr(self, name) not in (None, 0)
            ]
            if noisy:
                raise ValueError(f"deterministic turns noise and quantization off; do not also set {', '.join(noisy)}")
        return self


_DEVICE_KNOBS = (
    "dw_min",
    "n_states",
    "w_min",
    "w_max",
    "up_down",
    "dw_min_dtod",
    "w_max_dtod",
    "up_down_dtod",
    "dw_min_std",
    "write_noise_std",
    "sp_skew",
    "sp_variability",
)
# Dotted spec path -> the algorithms a value there applies to (JobSpec.check_across_fields rejects
# a value, other than None, for any other analog algorithm; fp ignores the device). Sweeps plan
# around it.
KNOB_ALGORITHMS: dict[str, tuple[str, ...]] = {"device.transfer_noise": TRANSFER_ALGORITHMS}


class AlgorithmOptions(StrictModel):
    """Knobs of the analog algorithms. Unset means the algorithm's calibrated recipe
    (cttv2_engine.recipes, measured in docs/study.md)."""

    fast_lr: float | None = Field(
        None, gt=0, le=100, description="update size on the fast tile A (relative to aihwkit's auto scale)"
    )
    transfer_every: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="images between two column reads of A; scaled per layer by tokens per image",
    )
    in_chop_prob: float | None = Field(
        None, ge=0, le=1, description="probability of flipping a column's chopper after its read"
    )
    in_chop_random: bool | None = Field(
        None,
        description="flip the choppers at random (true) or regularly (false: every column's chopper "
        "flips after every 1/in_chop_prob full reads of A, all at once, in step with the transfer cycle)",
    )
    forget_buffer: bool | None = Field(
        None,
        description="after a transfer, reset the digital buffer to momentum x what was transferred "
        "(true) or subtract what was transferred and keep the rest (false)",
    )
    momentum: float | None = Field(
        None, ge=0, lt=1, description="fraction of a transfer that stays on the digital buffer"
    )
    auto_granularity: float | None = Field(
        None,
        ge=0,
        le=1e7,
        description="transfer granularity in images' worth of updates (0 = off); scaled per layer by tokens per image",
    )
    update_bl: int | None = Field(
        None, ge=1, le=1000, description="pulse-train length (desired_bl) of gradient updates"
    )
    transfer_bl: int | None = Field(
        None, ge=1, le=1000, description="most pulses written into the slow tile per transfer"
    )


class WeightsRef(StrictModel):
    weights: str = Field(description="name of a weights file in the server's weights dir")

    @field_validator("weights")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SAFE_NAME.match(v):
            raise ValueError("must be a plain file name (letters, digits, . _ -), not a path")
        return v


class JobRef(StrictModel):
    job: int = Field(ge=1, description="id of an earlier job whose trained weights to start from")


class LastNBlocks(StrictModel):
    last_n_blocks: int = Field(ge=1, le=64)


AnalogScope = Literal["all", "head", "last_stage"] | LastNBlocks


class ModelSpec(StrictModel):
    arch: str = Field("swin_micro", description="a name from the model registry")
    img_size: int | None = Field(None, ge=8, le=1024, description="input size; default: the arch's")
    pretrained: WeightsRef | JobRef | None = None
    analog_scope: AnalogScope = "last_stage"
    digital_parts: Literal["frozen", "trained"] = "frozen"

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        registry.get_model_config(v)  # ValueError naming the known archs
        return v

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        registry.check_model(self.arch, self.img_size)
        if isinstance(self.analog_scope, LastNBlocks):
            total = sum(registry.get_model_config(self.arch).depths)
            if self.analog_scope.last_n_blocks > total:
                raise ValueError(
                    f"analog_scope.last_n_blocks is {self.analog_scope.last_n_blocks} but "
                    f"{self.arch} has {total} blocks"
                )
        return self

    @property
    def input_size(self) -> int:
        return self.img_size or registry.get_model_config(self.arch).img_size


class DataSpec(StrictModel):
    dataset: DatasetName = "digits"
    name: str | None = Field(None, description="imagefolder: a folder name inside the data dir")
    classes: list[Annotated[str, Field(max_length=64)] | Annotated[int, Field(ge=0)]] | None = Field(
        None, max_length=1000, description="class subset by name or index"
    )
    num_classes: int | None = Field(None, ge=2, le=1000, description="use the first N classes")
    train_per_class: int | None = Field(None, ge=1, le=100_000)
    test_per_class: int | None = Field(None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.classes is not None and self.num_classes is not None:
            raise ValueError("give either classes or num_classes, not both")
        if self.dataset == "imagefolder" and not self.name:
            raise ValueError("imagefolder needs name (a folder inside the data dir)")
        if self.name is not None and not SAFE_NAME.match(self.name):
            raise ValueError("name must be a plain folder name, not a path")
        return self


class TrainingSpec(StrictModel):
    kind: Literal["finetune", "pretrain"] = "finetune"
    epochs: int = Field(5, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float | None = Field(
        None,
        gt=0,
        le=100,
        description="learning rate: of the analog tiles for analog algorithms (for the "
        "Tiki-Taka family it scales the transfer, see fast_lr), of AdamW for fp; default per "
        "algorithm",
    )
    digital_lr: float | None = Field(
        None, gt=0, le=10, description="AdamW lr of the digital parameters in analog jobs (1e-3)"
    )
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    min_lr_ratio: float = Field(0.05, ge=0, le=1, description="final lr / lr for cosine")
    weight_decay: float = Field(0.0, ge=0, le=1, description="digital parameters only")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    eval_every: int = Field(1, ge=1, le=10_000, description="epochs between test evaluations")


class JobSpecFields(StrictModel):
    """A job spec's fields, each checked on its own. The API's request (which may give the
    device by id) builds on these too; JobSpec adds the checks across fields."""

    name: str | None = Field(None, max_length=200)
    algorithm: Algorithm = "c-ttv2"
    device: DeviceSpec | None = Field(default_factory=DeviceSpec, description="analog device; ignored for fp")
    algorithm_options: AlgorithmOptions = Field(default_factory=AlgorithmOptions)
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)


class JobSpec(JobSpecFields):
    """What to train. Stored verbatim (after validation) as the job's snapshot."""

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        self.check_across_fields()
        return self

    @classmethod
    def from_fields(cls, fields: JobSpecFields, **replace: Any) -> JobSpec:
        """The JobSpec of fields validated already (the API's request), with `replace` (also
        validated) put in, e.g. a device the request gave by id. The fields are not validated
        again: only check_across_fields runs (ValueError)."""
        values = {name: getattr(fields, name) for name in JobSpecFields.model_fields} | replace
        spec = cls.model_construct(**values)
        if spec.device is not None and not isinstance(spec.device, DeviceSpec):
            raise TypeError("from_fields needs the device inline (a DeviceSpec), not a reference")
        spec.check_across_fields()
        return spec

    def check_across_fields(self) -> None:
        """The checks that need more than one field; ValueError."""
        if self.algorithm != "fp" and self.device is None:
            raise ValueError(f"algorithm {self.algorithm} needs a device")
        if self.training.kind == "pretrain" and self.algorithm != "fp":
            raise ValueError("pretrain jobs are digital: use algorithm fp")
        transfer = KNOB_ALGORITHMS["device.transfer_noise"]
        if (
            self.device is not None
            and self.device.transfer_noise is not None
            and self.algorithm not in ("fp", *transfer)
        ):
            raise ValueError(
                f"device.transfer_noise applies to {', '.join(transfer)}; algorithm {self.algorithm} has no transfer"
            )

    def spec_hash(self) -> str:
        """Stable hash of the canonical JSON (used to match checkpoints and idempotent submits)."""
        return canonical_hash(self.model_dump(mode="json"))


def canonical_hash(obj: Any) -> str:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()
