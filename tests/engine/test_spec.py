"""The job spec, registry, presets and torch-free semantics checks (no training)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from pydantic import ValidationError

from cttv2_engine import SpecError, validate_spec_semantics
from cttv2_engine.registry import MODELS, check_model, stage_resolutions
from cttv2_engine.spec import JobSpec


def _error_locs(exc: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.errors()]


def test_light_modules_import_without_torch():
    code = (
        "import sys, json\n"
        "import cttv2_engine, cttv2_engine.spec, cttv2_engine.types, cttv2_engine.registry,"
        " cttv2_engine.presets, cttv2_engine.semantics, cttv2_engine.errors, cttv2_engine.families\n"
        "json.dumps(cttv2_engine.presets.listing())\n"
        "cttv2_engine.validate_spec_semantics({'algorithm': 'c-ttv2'})\n"
        "heavy = [m for m in ('torch', 'aihwkit', 'timm', 'numpy') if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    "bad, loc",
    [
        ({"device": {"dw_min": 0}}, "device.dw_min"),
        ({"device": {"dw_min": -0.01}}, "device.dw_min"),
        ({"device": {"dw_min": float("nan")}}, "device.dw_min"),
        ({"device": {"w_max": float("inf")}}, "device.w_max"),
        ({"device": {"w_min": 0.5}}, "device.w_min"),
        ({"device": {"dac_bits": 1}}, "device.dac_bits"),
        ({"device": {"sp_skew": 2}}, "device.sp_skew"),
        ({"device": {"family": "NotADevice"}}, "device.family"),
        ({"device": {"family": "os.system"}}, "device.family"),
        ({"device": {"bogus": 1}}, "device.bogus"),
        ({"algorithm_options": {"in_chop_prob": 1.5}}, "algorithm_options.in_chop_prob"),
        ({"algorithm": "adam"}, "algorithm"),
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"training": {"lr": 0}}, "training.lr"),
        ({"model": {"arch": "resnet50"}}, "model.arch"),
        ({"model": {"pretrained": {"weights": "../../etc/passwd"}}}, "model.pretrained.WeightsRef.weights"),
        ({"data": {"name": "../x", "dataset": "imagefolder"}}, "data"),
        ({"unknown_section": {}}, "unknown_section"),
    ],
)
def test_out_of_range_and_unknown_fields_are_rejected_naming_the_field(bad, loc):
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(bad)
    locs = _error_locs(info.value)
    assert any(got == loc or got.startswith(loc) for got in locs), locs


def test_family_knob_compatibility():
    with pytest.raises(ValidationError, match="write_noise_std is not a parameter of family ConstantStep"):
        JobSpec.model_validate({"device": {"family": "ConstantStep", "write_noise_std": 1.0}})
    with pytest.raises(ValidationError, match="sp_skew is not a parameter of family SoftBounds"):
        JobSpec.model_validate({"device": {"family": "SoftBounds", "sp_skew": 0.1}})
    # the ReRamSB preset is a SoftBoundsReference device: it takes the SP knobs
    JobSpec.model_validate({"device": {"family": "ReRamSB", "sp_skew": 0.1, "sp_variability": 0.05}})
    with pytest.raises(ValidationError, match="transfer"):
        JobSpec.model_validate({"algorithm": "sgd", "device": {"transfer_noise": 0.1}})
    with pytest.raises(ValidationError, match="deterministic"):
        JobSpec.model_validate({"device": {"deterministic": True, "out_noise": 0.1}})
    with pytest.raises(ValidationError, match="either dw_min or n_states"):
        JobSpec.model_validate({"device": {"dw_min": 0.01, "n_states": 100}})


def test_defaults_are_a_valid_c_ttv2_job():
    spec = JobSpec()
    assert spec.algorithm == "c-ttv2" and spec.device.family == "SoftBoundsReference"
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec
    assert spec.spec_hash() == JobSpec.model_validate(json.loads(spec.model_dump_json())).spec_hash()


@pytest.mark.parametrize(
    "arch, size, ok",
    [
        ("swin_micro", 32, True),
        ("swin_micro", 64, True),
        ("swin_micro", 30, False),  # patch 4 does not divide 30
        ("swin_micro", 36, False),  # 9x9 grid, window 4
        ("swin_tiny_patch4_window7_224", 224, True),
        ("swin_tiny_patch4_window7_224", 32, False),  # 8x8 grid, window 7
        ("swin_tiny_cifar", 32, True),
        ("swin_base_patch4_window12_384", 384, True),
        ("swin_base_patch4_window12_384", 224, False),
    ],
)
def test_check_model_tiling(arch, size, ok):
    if ok:
        check_model(arch, size)
    else:
        with pytest.raises(ValueError, match=f"{arch} cannot take img_size {size}"):
            check_model(arch, size)


def test_untileable_size_is_a_spec_error_naming_model():
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate({"model": {"arch": "swin_tiny_patch4_window7_224", "img_size": 32}})
    assert "model" in _error_locs(info.value)
    assert "window size 7" in str(info.value)


def test_every_registry_entry_tiles_at_its_default_size():
    for name in MODELS:
        check_model(name)
        assert stage_resolutions(name)[-1] >= 1


def test_semantics_checks_dataset_classes():
    validate_spec_semantics({"data": {"dataset": "cifar100", "classes": ["apple", "whale", 3]}})
    with pytest.raises(SpecError) as info:
        validate_spec_semantics({"data": {"dataset": "cifar10", "classes": [0, 10]}})
    assert info.value.field == "data.classes"
    with pytest.raises(SpecError, match="no class 'zebra'"):
        validate_spec_semantics({"data": {"dataset": "cifar100", "classes": ["zebra", "apple"]}})
    with pytest.raises(SpecError, match="listed twice"):
        validate_spec_semantics({"data": {"dataset": "digits", "classes": [1, "1"]}})
    with pytest.raises(SpecError) as info:
        validate_spec_semantics({"data": {"dataset": "digits", "num_classes": 11}})
    assert info.value.field == "data.num_classes"
    with pytest.raises(ValidationError):
        validate_spec_semantics({"model": {"analog_scope": {"last_n_blocks": 5}}})  # micro has 4


def test_presets_listing_is_json_and_documents_knobs():
    from cttv2_engine.presets import listing

    data = json.loads(json.dumps(listing()))
    assert {"SoftBoundsReference", "SoftBounds", "ConstantStep", "LinearStep", "ExpStep", "PowStep"} <= set(
        data["families"]
    )
    assert {"ReRamSB", "ReRamES", "EcRam", "Capacitor", "Idealized"} <= set(data["presets"])
    knobs = data["device_knobs"]
    for name in (
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
        "transfer_noise",
        "dac_bits",
        "adc_bits",
        "out_noise",
    ):
        assert knobs[name]["description"], name
    assert knobs["dw_min"]["exclusiveMinimum"] == 0 and knobs["dw_min"]["unit"] == "weight units"
    assert knobs["sp_skew"]["minimum"] == -1 and knobs["sp_skew"]["maximum"] == 1
    opts = data["algorithm_options"]
    assert opts["fast_lr"].get("default") is None and opts["transfer_every"]["unit"].startswith("images")
    from cttv2_engine.recipes import RECIPES

    assert data["algorithms"]["c-ttv2"]["recipe"]["fast_lr"] == RECIPES["c-ttv2"].fast_lr
    assert data["algorithms"]["fp"]["default_lr"] == RECIPES["fp"].lr
    assert knobs["weight_scaling_omega"]["unit"] == "fraction of w_max"
    assert set(data["algorithms"]) == {"c-ttv2", "ttv2", "agad", "sgd", "mixed-precision", "fp"}
    assert any(m["name"] == "swin_micro" for m in data["models"])
    assert set(data["datasets"]) == {"cifar100", "cifar10", "digits", "imagefolder"}
    assert not math.isnan(data["families"]["SoftBoundsReference"]["defaults"]["dw_min"])
