"""Device families and presets as plain data: which knobs each takes, and their defaults.

No torch or aihwkit here (the spec validates against this table). ``cttv2_engine.devices``
maps each name to its aihwkit class through a whitelist; a test checks that the preset
defaults below match aihwkit's dataclasses.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from cttv2_engine.recipes import WEIGHT_SCALING_OMEGA

_COMMON = ("dw_min", "n_states", "w_min", "w_max", "up_down", "dw_min_dtod", "w_max_dtod", "up_down_dtod", "dw_min_std")
_IO = (
    "dac_bits",
    "adc_bits",
    "out_noise",
    "transfer_noise",
    "weight_scaling_omega",
    "construction_seed",
    "deterministic",
)

# The one list of device names users may write: FAMILIES below is checked against it at import,
# the class whitelist in cttv2_engine.devices by tests/engine/test_knobs.py.
DeviceFamily = Literal[
    "SoftBoundsReference",
    "SoftBounds",
    "ConstantStep",
    "LinearStep",
    "ExpStep",
    "PowStep",
    "ReRamSB",
    "ReRamES",
    "EcRam",
    "EcRamMO",
    "Capacitor",
    "Idealized",
    "GokmenVlasov",
]

# name -> aihwkit class name, kind, the knobs it takes, and its defaults in our units.
# Generic families get a working default range (aihwkit's own, dw_min 0.001 on +-0.6, moves
# too little per pulse for transfer learning in tens of epochs; see docs/engine.md). Presets keep
# aihwkit's published values exactly: their point is to be that device.
_GENERIC = {
    "dw_min": 0.01,
    "w_min": -1.0,
    "w_max": 1.0,
    "up_down": 0.0,
    "dw_min_dtod": 0.3,
    "w_max_dtod": 0.3,
    "up_down_dtod": 0.01,
    "dw_min_std": 0.3,
}
FAMILIES: dict[str, dict[str, Any]] = {
    "SoftBoundsReference": {
        "aihwkit_class": "SoftBoundsReferenceDevice",
        "kind": "family",
        "knobs": _COMMON + ("write_noise_std", "sp_skew", "sp_variability") + _IO,
        "defaults": {**_GENERIC, "write_noise_std": 0.0, "sp_skew": 0.0, "sp_variability": 0.0},
        "description": "soft bounds, read differentially against a reference device set to the "
        "symmetry point; the only family with a settable symmetry point (the study's device)",
    },
    "SoftBounds": {
        "aihwkit_class": "SoftBoundsDevice",
        "kind": "family",
        "knobs": _COMMON + ("write_noise_std",) + _IO,
        "defaults": {**_GENERIC, "write_noise_std": 0.0},
        "description": "update step shrinks linearly towards each bound (ReRAM-like)",
    },
    "ConstantStep": {
        "aihwkit_class": "ConstantStepDevice",
        "kind": "family",
        "knobs": _COMMON + _IO,
        "defaults": dict(_GENERIC),
        "description": "constant update step between hard bounds",
    },
    "LinearStep": {
        "aihwkit_class": "LinearStepDevice",
        "kind": "family",
        "knobs": _COMMON + ("write_noise_std",) + _IO,
        "defaults": {**_GENERIC, "write_noise_std": 0.0},
        "description": "update step depends linearly on the weight (gamma_up/down = 0: constant)",
    },
    "ExpStep": {
        "aihwkit_class": "ExpStepDevice",
        "kind": "family",
        "knobs": _COMMON + ("write_noise_std",) + _IO,
        "defaults": {**_GENERIC, "write_noise_std": 0.0},
        "description": "exponential update step (CMOS-like)",
    },
    "PowStep": {
        "aihwkit_class": "PowStepDevice",
        "kind": "family",
        "knobs": _COMMON + ("write_noise_std",) + _IO,
        "defaults": {**_GENERIC, "write_noise_std": 0.0},
        "description": "update step is a power of the distance to the bound",
    },
    "ReRamSB": {
        "aihwkit_class": "ReRamSBPresetDevice",
        "kind": "preset",
        "knobs": _COMMON + ("write_noise_std", "sp_skew", "sp_variability") + _IO,
        "defaults": {
            "dw_min": 0.002,
            "w_min": -0.75,
            "w_max": 1.25,
            "up_down": 0.0,
            "dw_min_dtod": 0.3,
            "w_max_dtod": 0.24,
            "up_down_dtod": 0.01,
            "dw_min_std": 3.75,
            "write_noise_std": 56.0,
            "sp_skew": 0.0,
            "sp_variability": 0.0,
        },
        "description": "ReRAM, soft-bounds fit (Gong et al., Nat. Commun. 2018), SP-corrected",
    },
    "ReRamES": {
        "aihwkit_class": "ReRamESPresetDevice",
        "kind": "preset",
        "knobs": _COMMON + ("write_noise_std",) + _IO,
        "defaults": {
            "dw_min": 0.00135,
            "w_min": -1.0,
            "w_max": 1.0,
            "up_down": 0.259359,
            "dw_min_dtod": 0.2,
            "w_max_dtod": 0.3,
            "up_down_dtod": 0.05,
            "dw_min_std": 5.0,
            "write_noise_std": 75.0,
        },
        "description": "ReRAM, exponential-step fit (Gong et al., Nat. Commun. 2018)",
    },
    "EcRam": {
        "aihwkit_class": "EcRamPresetDevice",
        "kind": "preset",
        "knobs": _COMMON + ("write_noise_std",) + _IO,
        "defaults": {
            "dw_min": 0.002,
            "w_min": -0.8276,
            "w_max": 1.1724,
            "up_down": 0.0,
            "dw_min_dtod": 0.1,
            "w_max_dtod": 0.05,
            "up_down_dtod": 0.01,
            "dw_min_std": 0.3,
            "write_noise_std": 0.0,
        },
        "description": "ECRAM, linear-step fit (Tang et al., IEDM 2018)",
    },
    "EcRamMO": {
        "aihwkit_class": "EcRamMOPresetDevice",
        "kind": "preset",
        "knobs": _COMMON + ("write_noise_std",) + _IO,
        "defaults": {
            "dw_min": 0.00028214,
            "w_min": -0.8286,
            "w_max": 1.1714,
            "up_down": 0.0,
            "dw_min_dtod": 0.1,
            "w_max_dtod": 0.05,
            "up_down_dtod": 0.01,
            "dw_min_std": 2.0,
            "write_noise_std": 0.0,
        },
        "description": "metal-oxide ECRAM (Kim et al., IEDM 2019)",
    },
    "Capacitor": {
        "aihwkit_class": "CapacitorPresetDevice",
        "kind": "preset",
        "knobs": _COMMON + ("write_noise_std",) + _IO,
        "defaults": {
            "dw_min": 0.005,
            "w_min": -1.0,
            "w_max": 1.0,
            "up_down": 0.0,
            "dw_min_dtod": 0.1,
            "w_max_dtod": 0.07,
            "up_down_dtod": 0.06,
            "dw_min_std": 0.3,
            "write_noise_std": 0.0,
        },
        "description": "capacitor with leakage (Li et al., VLSI 2018)",
    },
    "Idealized": {
        "aihwkit_class": "IdealizedPresetDevice",
        "kind": "preset",
        "knobs": _COMMON + _IO,
        "defaults": {
            "dw_min": 0.0002,
            "w_min": -1.0,
            "w_max": 1.0,
            "up_down": 0.0,
            "dw_min_dtod": 0.3,
            "w_max_dtod": 0.3,
            "up_down_dtod": 0.0,
            "dw_min_std": 0.3,
        },
        "description": "symmetric constant-step device with 10000 states",
    },
    "GokmenVlasov": {
        "aihwkit_class": "GokmenVlasovPresetDevice",
        "kind": "preset",
        "knobs": _COMMON + _IO,
        "defaults": {
            "dw_min": 0.0016,
            "w_min": -1.0,
            "w_max": 1.0,
            "up_down": 0.0,
            "dw_min_dtod": 0.3,
            "w_max_dtod": 0.3,
            "up_down_dtod": 0.01,
            "dw_min_std": 0.3,
        },
        "description": "constant-step device of Gokmen & Vlasov (Front. Neurosci. 2016)",
    },
}

if tuple(FAMILIES) != get_args(DeviceFamily):
    raise RuntimeError("FAMILIES must list exactly the names of DeviceFamily, in its order")

# Peripheral (IO) defaults: aihwkit's IOParameters (7-bit DAC, 9-bit ADC, out_noise 0.06).
IO_DEFAULTS = {
    "dac_bits": 7,
    "adc_bits": 9,
    "out_noise": 0.06,
    "transfer_noise": None,
    "weight_scaling_omega": WEIGHT_SCALING_OMEGA,
}
