"""JobSpec device + algorithm -> an aihwkit RPU config, through a whitelist of classes.

The only way a user-typed family name reaches a class is the ``DEVICE_CLASSES`` table below;
every knob value was range-checked by the spec. Knob -> aihwkit field mapping (each verified
in tests/engine/test_knobs.py):

- sp_skew m        -> SoftBoundsReference ``reference_mean = -m`` with the device's own
                      symmetry point subtracted: the symmetry point sits at +m
- sp_variability s -> ``reference_std = s`` (device-to-device std of the symmetry point)
- transfer_noise   -> ``device.transfer_forward.out_noise`` (noise on reading A in a transfer;
                      unset: the forward read's out_noise, as build_config copies the IO)
- weight_scaling_omega -> ``mapping.weight_scaling_omega`` (unset: recipes.WEIGHT_SCALING_OMEGA)
- dac/adc bits b   -> ``inp_res`` / ``out_res`` = 1 / (2**b - 2)

Unset algorithm options resolve to the algorithm's recipe (cttv2_engine.recipes); why each
mapping and recipe value is what it is: docs/engine.md and docs/study.md.
"""

from __future__ import annotations

from typing import Any

from aihwkit.simulator.configs import (
    ConstantStepDevice,
    DigitalRankUpdateRPUConfig,
    ExpStepDevice,
    LinearStepDevice,
    MixedPrecisionCompound,
    PowStepDevice,
    SingleRPUConfig,
    SoftBoundsDevice,
    SoftBoundsReferenceDevice,
    build_config,
)
from aihwkit.simulator.parameters import IOParameters, PulseType, UpdateParameters
from aihwkit.simulator.presets.devices import (
    CapacitorPresetDevice,
    EcRamMOPresetDevice,
    EcRamPresetDevice,
    GokmenVlasovPresetDevice,
    IdealizedPresetDevice,
    ReRamESPresetDevice,
    ReRamSBPresetDevice,
)

from cttv2_engine.families import FAMILIES
from cttv2_engine.recipes import RECIPES, WEIGHT_SCALING_OMEGA
from cttv2_engine.spec import TRANSFER_ALGORITHMS, AlgorithmOptions, DeviceSpec

DEVICE_CLASSES: dict[str, type] = {
    "SoftBoundsReference": SoftBoundsReferenceDevice,
    "SoftBounds": SoftBoundsDevice,
    "ConstantStep": ConstantStepDevice,
    "LinearStep": LinearStepDevice,
    "ExpStep": ExpStepDevice,
    "PowStep": PowStepDevice,
    "ReRamSB": ReRamSBPresetDevice,
    "ReRamES": ReRamESPresetDevice,
    "EcRam": EcRamPresetDevice,
    "EcRamMO": EcRamMOPresetDevice,
    "Capacitor": CapacitorPresetDevice,
    "Idealized": IdealizedPresetDevice,
    "GokmenVlasov": GokmenVlasovPresetDevice,
}
_SYMMETRY_POINT_CLASSES = (SoftBoundsReferenceDevice,)  # ReRamSB is a subclass


def resolved_device_params(spec: DeviceSpec) -> dict[str, Any]:
    """The spec's knobs with the family's defaults filled in (our units)."""
    params = dict(FAMILIES[spec.family]["defaults"])
    for name in FAMILIES[spec.family]["knobs"]:
        value = getattr(spec, name, None)
        if value is not None and name in params:
            params[name] = value
    if spec.n_states is not None:
        params["dw_min"] = (params["w_max"] - params["w_min"]) / spec.n_states
    return params


def build_device(spec: DeviceSpec) -> Any:
    """One aihwkit pulsed device from the spec (whitelisted class, checked values)."""
    cls = DEVICE_CLASSES[spec.family]
    p = resolved_device_params(spec)
    kwargs: dict[str, Any] = {
        "dw_min": p["dw_min"],
        "w_min": p["w_min"],
        "w_max": p["w_max"],
        "up_down": p["up_down"],
        "dw_min_dtod": p["dw_min_dtod"],
        "w_max_dtod": p["w_max_dtod"],
        # one knob for the spread of both bounds; presets keep their own lower-bound spread
        "w_min_dtod": p["w_max_dtod"] if spec.w_max_dtod is not None else cls().w_min_dtod,
        "up_down_dtod": p["up_down_dtod"],
        "dw_min_std": p["dw_min_std"],
        "construction_seed": spec.construction_seed,
    }
    if "write_noise_std" in p:
        kwargs["write_noise_std"] = p["write_noise_std"]
    if issubclass(cls, _SYMMETRY_POINT_CLASSES):
        # Calibrated device: the reference sits at each device's own symmetry point, moved by
        # the skew and spread by the variability (the study's SP knobs).
        kwargs.update(
            subtract_symmetry_point=True,
            reference_mean=-p["sp_skew"],
            reference_std=p["sp_variability"],
        )
    if spec.deterministic:
        kwargs.update(dw_min_std=0.0)
        if "write_noise_std" in kwargs:
            kwargs["write_noise_std"] = 0.0
    return cls(**kwargs)


def build_io(spec: DeviceSpec) -> IOParameters:
    if spec.deterministic:
        return IOParameters(is_perfect=True)
    io = IOParameters()
    if spec.dac_bits is not None:
        io.inp_res = 1.0 / (2**spec.dac_bits - 2)
    if spec.adc_bits is not None:
        io.out_res = 1.0 / (2**spec.adc_bits - 2)
    if spec.out_noise is not None:
        io.out_noise = spec.out_noise
    return io


def resolved_options(algorithm: str, options: AlgorithmOptions) -> AlgorithmOptions:
    """The spec's algorithm options with the algorithm's recipe filled in where unset."""
    return AlgorithmOptions(**{**RECIPES[algorithm].options(), **options.model_dump(exclude_none=True)})


def build_rpu_config(algorithm: str, spec: DeviceSpec, options: AlgorithmOptions) -> Any:
    """The base RPU config of an analog algorithm (transfer_every and auto_granularity still
    per image; see ``per_layer_config``)."""
    options = resolved_options(algorithm, options)
    device = build_device(spec)
    io = build_io(spec)
    update = UpdateParameters(desired_bl=options.update_bl)
    if spec.deterministic:
        update.pulse_type = PulseType.DETERMINISTIC_IMPLICIT

    if algorithm == "sgd":
        config = SingleRPUConfig(device=device, forward=io, backward=io, update=update)
    elif algorithm == "mixed-precision":
        config = DigitalRankUpdateRPUConfig(
            device=MixedPrecisionCompound(device=device), forward=io, backward=io, update=update
        )
    elif algorithm in TRANSFER_ALGORITHMS:
        # ttv2 is built as c-ttv2 with the choppers off (in_chop_prob 0 in its recipe): aihwkit's
        # own "ttv2" preset also switches auto_scale off, which would change two things at once.
        config = build_config(
            "agad" if algorithm == "agad" else "c-ttv2",
            device,
            io_parameters=io,
            up_parameters=update,
            construction_seed=spec.construction_seed,
        )
        config.update.desired_bl = options.update_bl  # build_config hard-codes 5
        compound = config.device
        compound.fast_lr = options.fast_lr
        compound.auto_granularity = options.auto_granularity
        compound.transfer_every = options.transfer_every
        compound.in_chop_prob = options.in_chop_prob
        for name in ("in_chop_random", "forget_buffer", "momentum"):  # unset: aihwkit's c-TTv2 default
            value = getattr(options, name)
            if value is not None:
                setattr(compound, name, value)
        compound.transfer_update.desired_bl = options.transfer_bl
        # Unset transfer_noise: the transfer reads A like a forward pass (out_noise), as
        # build_config copies the forward IO into transfer_forward; set, it replaces that noise.
        if spec.transfer_noise is not None:
            compound.transfer_forward.out_noise = spec.transfer_noise
        if spec.deterministic:
            compound.in_chop_random = False
            compound.transfer_update.pulse_type = PulseType.DETERMINISTIC_IMPLICIT
    else:
        raise ValueError(f"no analog config for algorithm {algorithm!r}")
    config.mapping.weight_scaling_omega = (
        spec.weight_scaling_omega if spec.weight_scaling_omega is not None else WEIGHT_SCALING_OMEGA
    )
    return config


def per_layer_config(config: Any, tokens: int) -> Any:
    """Scale the per-image periods to this layer's updates per image.

    ``units_in_mbatch=False``: aihwkit counts each token as one update, so a layer that sees
    64 tokens per image would read A 64x too often, and fill the buffer 64x too fast, without
    this (docs/engine.md).
    """
    device = getattr(config, "device", None)
    if device is not None and hasattr(device, "transfer_every") and hasattr(device, "fast_lr"):
        device.transfer_every = device.transfer_every * max(1, tokens)
        device.auto_granularity = device.auto_granularity * max(1, tokens)
    return config


def never_transfers(config: Any) -> bool:
    """Whether a layer's fast tile is never read into its slow tile: aihwkit 1.1.0 rounds the
    transfer period to whole updates (roundf, units_in_mbatch=False), and a period of 0 means no
    transfer. A layer with fewer tokens per image than 1 / (2 x transfer_every) gets that."""
    device = getattr(config, "device", None)
    every = getattr(device, "transfer_every", None)
    return every is not None and hasattr(device, "fast_lr") and every < 0.5
