"""The device knobs do what they say: checked on the built rpu_config and on small real tiles."""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch

from cttv2_engine.devices import DEVICE_CLASSES, build_device, build_rpu_config, per_layer_config
from cttv2_engine.families import FAMILIES, DeviceFamily
from cttv2_engine.recipes import RECIPES, WEIGHT_SCALING_OMEGA
from cttv2_engine.spec import AlgorithmOptions, DeviceSpec

OPTIONS = AlgorithmOptions()


def _equilibrium_weights(spec: DeviceSpec, updates: int = 3000) -> torch.Tensor:
    """Weights of a 40x40 SGD tile after many zero-mean random pulse updates from 0.

    Balanced up/down pulses drive each device to its symmetry point (SP), so the visible
    weights end up scattered (pulse noise) around each device's SP.
    """
    from aihwkit.simulator.tiles import AnalogTile

    config = build_rpu_config("sgd", spec, OPTIONS)
    config.forward.is_perfect = True
    tile = AnalogTile(40, 40, config)
    tile.set_weights(torch.zeros(40, 40))
    tile.set_learning_rate(0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(updates):
        x = torch.randint(0, 2, (1, 40), generator=gen).float() * 2 - 1
        d = torch.randint(0, 2, (1, 40), generator=gen).float() * 2 - 1
        tile.update(x, d)
    return tile.get_weights()[0]


BASE = {"dw_min": 0.01, "dw_min_std": 0.0, "construction_seed": 11}


@pytest.mark.parametrize("skew", [0.1, -0.2])
def test_sp_skew_moves_the_symmetry_point_by_the_set_amount(skew):
    device = build_device(DeviceSpec(sp_skew=skew, **BASE))
    assert device.subtract_symmetry_point and device.reference_mean == -skew
    base = _equilibrium_weights(DeviceSpec(**BASE)).mean().item()
    skewed = _equilibrium_weights(DeviceSpec(sp_skew=skew, **BASE)).mean().item()
    assert abs(base) < 0.01
    assert skewed - base == pytest.approx(skew, abs=0.01)


def test_sp_variability_spreads_the_symmetry_point():
    assert build_device(DeviceSpec(sp_variability=0.1, **BASE)).reference_std == 0.1
    base = _equilibrium_weights(DeviceSpec(**BASE))
    for spread in (0.1, 0.2):
        w = _equilibrium_weights(DeviceSpec(sp_variability=spread, **BASE))
        assert abs(w.mean().item()) < 0.02
        # SP spread adds in quadrature to the pulse noise around each device's SP
        measured = math.sqrt(max(w.var().item() - base.var().item(), 0.0))
        assert measured == pytest.approx(spread, rel=0.15)


def _cttv2_tile_after_zero_gradients(transfer_noise: float | None):
    """A c-TTv2 tile fed inputs but zero gradients: A never moves, so the slow weights C can
    only change through what the transfer reads off A."""
    from aihwkit.simulator.tiles import AnalogTile

    spec = DeviceSpec(dw_min=0.01, dw_min_std=0.0, construction_seed=11, transfer_noise=transfer_noise)
    config = build_rpu_config("c-ttv2", spec, AlgorithmOptions(transfer_every=1, auto_granularity=0))
    config.forward.is_perfect = True
    tile = AnalogTile(20, 20, config)
    tile.set_weights(torch.zeros(20, 20))
    tile.set_learning_rate(1.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        tile.update(torch.randn(1, 20, generator=gen), torch.zeros(1, 20))
    return config, tile.get_weights()[0]


def test_transfer_noise_changes_the_transfer_read():
    config, quiet = _cttv2_tile_after_zero_gradients(0.0)
    assert config.device.transfer_forward.out_noise == 0.0
    assert torch.count_nonzero(quiet) == 0  # noiseless read of A = 0: nothing transferred
    config, noisy = _cttv2_tile_after_zero_gradients(0.5)
    assert config.device.transfer_forward.out_noise == 0.5
    assert config.forward.out_noise == pytest.approx(0.06)  # forward reads untouched
    assert torch.count_nonzero(noisy) > 0.9 * noisy.numel()  # read noise written into C
    assert noisy.std() > 0.02


def test_io_and_device_knobs_reach_the_config():
    spec = DeviceSpec(
        family="SoftBounds",
        n_states=400,
        w_min=-0.8,
        w_max=1.2,
        up_down=0.1,
        dw_min_dtod=0.2,
        w_max_dtod=0.15,
        up_down_dtod=0.05,
        dw_min_std=0.4,
        write_noise_std=2.0,
        dac_bits=6,
        adc_bits=8,
        out_noise=0.02,
    )
    config = build_rpu_config(
        "c-ttv2", spec, AlgorithmOptions(fast_lr=0.3, transfer_every=2, in_chop_prob=0.2, update_bl=7, transfer_bl=2)
    )
    fast, slow = config.device.unit_cell_devices
    for dev in (fast, slow):
        assert dev.dw_min == pytest.approx(2.0 / 400)
        assert (dev.w_min, dev.w_max, dev.up_down) == (-0.8, 1.2, 0.1)
        assert (dev.dw_min_dtod, dev.w_max_dtod, dev.w_min_dtod) == (0.2, 0.15, 0.15)
        assert (dev.up_down_dtod, dev.dw_min_std, dev.write_noise_std) == (0.05, 0.4, 2.0)
    assert config.forward.inp_res == pytest.approx(1 / 62)
    assert config.forward.out_res == pytest.approx(1 / 254)
    assert config.forward.out_noise == config.backward.out_noise == 0.02
    dev = config.device
    assert (dev.fast_lr, dev.transfer_every, dev.in_chop_prob) == (0.3, 2, 0.2)
    assert config.update.desired_bl == 7 and dev.transfer_update.desired_bl == 2
    assert config.mapping.weight_scaling_omega == WEIGHT_SCALING_OMEGA  # unset: the recipe's
    mapped = build_rpu_config("sgd", DeviceSpec(weight_scaling_omega=0.9), AlgorithmOptions())
    assert mapped.mapping.weight_scaling_omega == 0.9


def test_unset_options_resolve_to_each_algorithms_recipe():
    for algorithm in ("c-ttv2", "ttv2", "agad"):
        dev = build_rpu_config(algorithm, DeviceSpec(), AlgorithmOptions()).device
        recipe = RECIPES[algorithm]
        assert (dev.fast_lr, dev.transfer_every, dev.in_chop_prob, dev.auto_granularity) == (
            recipe.fast_lr,
            recipe.transfer_every,
            recipe.in_chop_prob,
            recipe.auto_granularity,
        )
        assert dev.transfer_update.desired_bl == recipe.transfer_bl
    sgd = build_rpu_config("sgd", DeviceSpec(), AlgorithmOptions())
    assert sgd.update.desired_bl == RECIPES["sgd"].update_bl


def test_ttv2_is_cttv2_without_choppers_and_nothing_else():
    """The ablation changes one thing: aihwkit's own "ttv2" preset also turns auto_scale off."""
    cttv2 = build_rpu_config("c-ttv2", DeviceSpec(), AlgorithmOptions(in_chop_prob=0.0)).device
    ttv2 = build_rpu_config("ttv2", DeviceSpec(), AlgorithmOptions()).device
    assert ttv2.in_chop_prob == 0.0 and ttv2.auto_scale is True
    assert repr(ttv2) == repr(cttv2)


def test_auto_granularity_and_transfer_period_scale_with_tokens():
    """Tokens count as updates: both per-update periods are per image, times tokens per image."""
    base = build_rpu_config("c-ttv2", DeviceSpec(), AlgorithmOptions(transfer_every=0.5, auto_granularity=100))
    layer = per_layer_config(base, 64)
    assert layer.device.transfer_every == 32 and layer.device.auto_granularity == 6400


@pytest.mark.parametrize(
    "algorithm, compound",
    [
        ("c-ttv2", "ChoppedTransferCompound"),
        ("ttv2", "ChoppedTransferCompound"),
        ("agad", "DynamicTransferCompound"),
        ("mixed-precision", "MixedPrecisionCompound"),
    ],
)
def test_algorithms_build_their_compounds(algorithm, compound):
    config = build_rpu_config(algorithm, DeviceSpec(), OPTIONS)
    assert type(config.device).__name__ == compound
    if algorithm == "ttv2":
        assert config.device.in_chop_prob == 0.0
    if algorithm == "c-ttv2":
        assert config.device.in_chop_prob == RECIPES["c-ttv2"].in_chop_prob


def test_whitelist_covers_every_family_and_presets_match_aihwkit():
    assert set(DEVICE_CLASSES) == set(get_args(DeviceFamily))  # the whitelist has every name, no other
    for name, info in FAMILIES.items():
        cls = DEVICE_CLASSES[name]
        assert cls.__name__ == info["aihwkit_class"]
        if info["kind"] != "preset":
            continue
        ref = cls()
        for knob, value in info["defaults"].items():
            if knob in ("sp_skew", "sp_variability"):
                continue
            assert getattr(ref, knob) == pytest.approx(value), (name, knob)
        # the spec's defaults reproduce the preset exactly
        built = build_device(DeviceSpec(family=name))
        for knob in (
            "dw_min",
            "w_min",
            "w_max",
            "up_down",
            "dw_min_dtod",
            "w_max_dtod",
            "w_min_dtod",
            "up_down_dtod",
            "dw_min_std",
        ):
            assert getattr(built, knob) == pytest.approx(getattr(ref, knob)), (name, knob)


def test_construction_seed_zero_is_never_passed_to_aihwkit(tmp_path, context):
    """aihwkit draws a random device population for seed 0; the engine derives a fixed one."""
    from cttv2_engine.build import build_train_model
    from cttv2_engine.spec import JobSpec

    spec = JobSpec.model_validate({"algorithm": "c-ttv2", "model": {"analog_scope": "head"}, "training": {"seed": 4}})
    torch.manual_seed(0)
    tm = build_train_model(spec, 3, context, torch.device("cpu"))
    assert tm.construction_seed == 5
    torch.manual_seed(0)
    again = build_train_model(spec, 3, context, torch.device("cpu"))
    for (_, a), (_, b) in zip(_tiles(tm.model), _tiles(again.model)):
        assert torch.equal(a.tile.get_hidden_parameters(), b.tile.get_hidden_parameters())


def _tiles(model):
    from aihwkit.simulator.tiles.module import TileModule

    return [(n, m) for n, m in model.named_modules() if isinstance(m, TileModule)]
