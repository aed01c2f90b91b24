"""The paper's eleven non-idealities: each named knob reaches the aihwkit field it names, with
the value its mapping says, read back from a real tile built from the job's rpu_config; the CPU
study's sweeps sweep exactly these knobs over exactly these values."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from cttv2_engine.devices import build_rpu_config
from cttv2_engine.nonidealities import NONIDEALITIES, NonIdeality
from cttv2_engine.spec import AlgorithmOptions, DeviceSpec, JobSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PAPER_SWEEPS = sorted(EXAMPLES.glob("study-cpu-paper-*.yaml"))


def _read(obj: object, path: str) -> object:
    return functools.reduce(lambda o, part: o[int(part)] if part.isdigit() else getattr(o, part), path.split("."), obj)


def _tile_config(spec: DeviceSpec):
    """The rpu_config as the built tile holds it (an AnalogLinear made from the job's config)."""
    from aihwkit.nn import AnalogLinear

    layer = AnalogLinear(6, 4, bias=False, rpu_config=build_rpu_config("c-ttv2", spec, AlgorithmOptions()))
    (tile,) = list(layer.analog_tiles())
    return tile.rpu_config


# The published paper's eleven, in its order, and the device fields that make each.
PAPER = {
    "weight-transfer noise": {"transfer_noise"},
    "write noise": {"write_noise_std"},
    "symmetry-point skew": {"sp_skew"},
    "symmetry-point variability": {"sp_variability"},
    "pulse-update (cycle-to-cycle) noise": {"dw_min_std"},
    "mean pulse response": {"up_down"},
    "device-to-device variability": {"dw_min_dtod"},
    "number of states": {"n_states"},
    "output (read) noise": {"out_noise"},
    "I/O resolution": {"dac_bits", "adc_bits"},
    "device-to-device variability of the min/max conductance": {"w_max_dtod"},
}


def test_the_papers_eleven_are_each_a_device_field_of_their_own():
    assert len(PAPER) == 11
    assert set().union(*PAPER.values()) == {n.field for n in NONIDEALITIES}
    assert len(NONIDEALITIES) == sum(len(f) for f in PAPER.values())
    assert {n.field for n in NONIDEALITIES} <= set(DeviceSpec.model_fields)


@pytest.mark.parametrize("knob", NONIDEALITIES, ids=lambda n: n.field)
def test_each_knob_reaches_the_aihwkit_field_it_names(knob: NonIdeality):
    for value in knob.study[1:]:
        config = _tile_config(DeviceSpec(**{knob.field: value}))
        for path in knob.aihwkit:
            assert _read(config, path) == pytest.approx(knob.aihwkit_value(value)), (path, value)
        # ... and the reference value maps to something else: the knob moves the field.
        reference = _tile_config(DeviceSpec(**{knob.field: knob.study[0]}))
        assert all(_read(reference, p) != pytest.approx(knob.aihwkit_value(value)) for p in knob.aihwkit)


@pytest.mark.parametrize("knob", NONIDEALITIES, ids=lambda n: n.field)
def test_each_knob_is_validated_naming_the_field_and_its_range(knob: NonIdeality):
    info = DeviceSpec.model_fields[knob.field]
    bounds = {type(m).__name__: m for m in info.metadata}
    upper = next(b for name, b in bounds.items() if name in ("Le", "Lt"))
    limit = getattr(upper, "le", getattr(upper, "lt", None))
    with pytest.raises(ValueError) as caught:
        JobSpec.model_validate({"device": {knob.field: limit * 2 + 1}})
    assert f"device.{knob.field}" in str(caught.value).replace("\n", ".")
    assert str(limit) in str(caught.value)


@pytest.mark.parametrize("path", PAPER_SWEEPS, ids=lambda p: p.name)
def test_the_cpu_paper_sweeps_sweep_every_knob_over_its_study_values(path: Path):
    sweep = yaml.safe_load(path.read_text())
    grid = {k: v for k, v in sweep["grid"].items() if k != "algorithm"}
    assert grid == {n.path: list(n.study) for n in NONIDEALITIES}
    assert sweep["mode"] == "one_at_a_time" and sweep["baseline"] is True
    assert sweep["grid"]["algorithm"] == ["c-ttv2", "ttv2", "sgd"] and sweep["reference_only"] == ["sgd"]
    assert sweep["base"]["model"]["analog_scope"] == "all"


def test_there_is_a_cpu_paper_sweep_per_model_family():
    archs = {yaml.safe_load(p.read_text())["base"]["model"]["arch"] for p in PAPER_SWEEPS}
    assert archs == {"swin_micro", "resnet_micro"}
