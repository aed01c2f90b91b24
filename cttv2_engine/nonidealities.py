"""The paper's eleven device and circuit non-idealities as named knobs of the device spec.

Plain data, no torch (the API lists it at ``GET /v1/presets``). Each entry names the paper's
non-ideality (Fagbohungbe et al., IEEE TCAS-II 2025), the ``DeviceSpec`` field that sets it (one
field each: where the spec already had the knob under another name it is mapped, not
duplicated; I/O resolution is two fields, the DAC's and the ADC's), which aihwkit field it
reaches and how our value becomes that field's value (``aihwkit_value``; checked on a built
tile by tests/engine/test_nonidealities.py), and the values the CPU study sweeps, the
reference device's first. Only the paper's abstract is public: the ranges are chosen from the
device physics (why, per knob: docs/study.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cttv2_engine.families import IO_DEFAULTS


@dataclass(frozen=True)
class NonIdeality:
    name: str  # the paper's name
    field: str  # DeviceSpec field ("device.<field>" in a job spec or a sweep axis)
    aihwkit: tuple[str, ...]  # the aihwkit fields it sets: dotted paths in c-TTv2's rpu_config
    mapping: str  # how our value becomes that field's value, in words
    aihwkit_value: Callable[[float], float]  # ... and as a function
    study: tuple[float, ...]  # the CPU study's values, the reference device's first
    why: str  # why that range

    @property
    def path(self) -> str:
        return f"device.{self.field}"


def _bits(b: float) -> float:
    return 1.0 / (2**b - 2)


def _cells(name: str) -> tuple[str, ...]:
    """The field on both unit cells of c-TTv2's compound: the fast tile A and the slow tile C."""
    return (f"device.unit_cell_devices.0.{name}", f"device.unit_cell_devices.1.{name}")


def _io(name: str) -> tuple[str, ...]:
    return (f"forward.{name}", f"backward.{name}")


NONIDEALITIES: tuple[NonIdeality, ...] = (
    NonIdeality(
        "weight-transfer noise",
        "transfer_noise",
        ("device.transfer_forward.out_noise",),
        "the same value: additive Gaussian noise on each read of A during a transfer",
        float,
        (0.06, 0.24, 0.96),
        "1x (a transfer read as noisy as a forward read), 4x and 16x the read noise",
    ),
    NonIdeality(
        "write noise",
        "write_noise_std",
        _cells("write_noise_std"),
        "the same value: the apparent weight is the written one plus write_noise_std x dw_min x N(0, 1), "
        "drawn anew at each write",
        float,
        (0.0, 1.0, 4.0),
        "none, one step, four steps of a 200-state device",
    ),
    NonIdeality(
        "symmetry-point skew",
        "sp_skew",
        _cells("reference_mean"),
        "reference_mean = -sp_skew with subtract_symmetry_point: every device's symmetry point sits at +sp_skew",
        lambda v: -v,
        (0.0, 0.15, 0.3),
        "up to half the largest mapped weight (weights mapped to 0.6 w_max)",
    ),
    NonIdeality(
        "symmetry-point variability",
        "sp_variability",
        _cells("reference_std"),
        "reference_std = sp_variability: device-to-device std of the symmetry point",
        float,
        (0.05, 0.15, 0.3),
        "aihwkit's 5% reference programming error, up to half the largest mapped weight",
    ),
    NonIdeality(
        "pulse-update (cycle-to-cycle) noise",
        "dw_min_std",
        _cells("dw_min_std"),
        "the same value: each pulse's step is dw_min x (1 + dw_min_std x N(0, 1))",
        float,
        (0.3, 1.0, 2.0),
        "aihwkit's default 0.3, to a step noise twice the step (ReRAM-like)",
    ),
    NonIdeality(
        "mean pulse response (up/down asymmetry)",
        "up_down",
        _cells("up_down"),
        "the same value: the mean step is dw_min x (1 + up_down) up and dw_min x (1 - up_down) down; "
        "its size is set by the number of states",
        float,
        (0.0, 0.2, 0.5),
        "symmetric, to steps up 3x the steps down",
    ),
    NonIdeality(
        "device-to-device variability",
        "dw_min_dtod",
        _cells("dw_min_dtod"),
        "the same value: relative device-to-device std of each device's step",
        float,
        (0.3, 0.6, 1.0),
        "aihwkit's 30% to a spread as large as the step",
    ),
    NonIdeality(
        "number of states",
        "n_states",
        _cells("dw_min"),
        "dw_min = (w_max - w_min) / n_states (the device range stays [-1, 1])",
        lambda v: 2.0 / v,
        (200, 100, 40),
        "200 (a few-bit analog memory with some headroom) down to 40 (~5 bits)",
    ),
    NonIdeality(
        "output (read) noise",
        "out_noise",
        _io("out_noise"),
        "the same value: additive Gaussian noise on each output of a forward and backward read "
        "(a transfer's read too, unless transfer_noise is set)",
        float,
        (0.06, 0.12, 0.24),
        "aihwkit's 0.06 (6% of the largest output), 2x and 4x",
    ),
    NonIdeality(
        "input resolution (DAC bits)",
        "dac_bits",
        _io("inp_res"),
        "inp_res = 1 / (2**dac_bits - 2)",
        _bits,
        (7, 4),
        "aihwkit's 7 bits, and 4",
    ),
    NonIdeality(
        "output resolution (ADC bits)",
        "adc_bits",
        _io("out_res"),
        "out_res = 1 / (2**adc_bits - 2)",
        _bits,
        (9, 6),
        "aihwkit's 9 bits, and 6",
    ),
    NonIdeality(
        "device-to-device variability of the min/max conductance",
        "w_max_dtod",
        _cells("w_max_dtod") + _cells("w_min_dtod"),
        "the same value for both bounds: relative device-to-device std of w_max and of w_min",
        float,
        (0.3, 0.6, 1.0),
        "aihwkit's 30% to a spread as large as the bound",
    ),
)

BY_FIELD = {n.field: n for n in NONIDEALITIES}
if len(BY_FIELD) != len(NONIDEALITIES):
    raise RuntimeError("each non-ideality sets a field of its own")
# The reference device of the CPU study: each knob's first study value (also IO_DEFAULTS' where
# the periphery has a default).
for _n in NONIDEALITIES:
    if _n.field in IO_DEFAULTS and IO_DEFAULTS[_n.field] not in (None, _n.study[0]):
        raise RuntimeError(
            f"{_n.field}: the study's reference {_n.study[0]} is not the default {IO_DEFAULTS[_n.field]}"
        )


def listing() -> list[dict[str, object]]:
    """The table behind ``GET /v1/presets`` -> nonidealities (units and ranges: device_knobs)."""
    return [
        {
            "name": n.name,
            "field": n.path,
            "aihwkit": list(n.aihwkit),
            "mapping": n.mapping,
            "study_values": list(n.study),
            "why": n.why,
        }
        for n in NONIDEALITIES
    ]
