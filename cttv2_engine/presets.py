"""Device families and presets as plain data, and the JSON listing behind ``GET /v1/presets``.

No torch or aihwkit here (the API imports it). ``cttv2_engine.devices`` maps each name to its
aihwkit class through a whitelist; tests check that the defaults below match aihwkit's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cttv2_engine import nonidealities, registry
from cttv2_engine.families import FAMILIES, IO_DEFAULTS
from cttv2_engine.recipes import BASELINE_EPOCHS_FACTOR, RECIPES
from cttv2_engine.spec import (
    ALGORITHMS,
    DATASETS,
    MAX_EPOCHS,
    AlgorithmOptions,
    DataSpec,
    DeviceSpec,
    ModelSpec,
    TrainingSpec,
)

ALGORITHM_DOCS = {
    "c-ttv2": "chopped Tiki-Taka v2 (Rasch et al., Nat. Commun. 2024): fast tile A, digital "
    "buffer, chopped transfer into the slow tile C",
    "ttv2": "Tiki-Taka v2: c-ttv2 with the choppers off (in_chop_prob = 0), everything else equal",
    "agad": "analog gradient accumulation with dynamic reference (Rasch et al. 2024)",
    "sgd": "plain in-memory SGD: stochastic pulse updates straight onto one device",
    "mixed-precision": "gradient accumulated digitally, transferred as pulses (Nandakumar 2020)",
    "fp": "digital floating-point baseline (no analog tiles)",
}
DEFAULT_LR = {a: RECIPES[a].lr for a in ALGORITHMS}
DATASET_DOCS = {
    "digits": "scikit-learn's bundled 8x8 digits (10 classes, ~1350 train / 450 test), offline",
    "cifar10": "DATA_DIR/cifar-10-batches-py (python pickle layout)",
    "cifar100": "DATA_DIR/cifar-100-python (python pickle layout)",
    "imagefolder": "DATA_DIR/<name>/{train,test}/<class>/*.png|jpg",
}


def _field_docs(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each field's description, default and range, read from the pydantic schema."""
    schema = model.model_json_schema()
    out = {}
    for name, prop in schema.get("properties", {}).items():
        doc: dict[str, Any] = {}
        for key in (
            "description",
            "default",
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "enum",
            "type",
        ):
            if key in prop:
                doc[key] = prop[key]
        if "anyOf" in prop:
            types = [p.get("type") for p in prop["anyOf"] if p.get("type") != "null"]
            for p in prop["anyOf"]:
                for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                    if key in p:
                        doc[key] = p[key]
            doc["type"] = types[0] if len(types) == 1 else types
            doc["nullable"] = True
        out[name] = doc
    return out


KNOB_UNITS = {
    "dw_min": "weight units",
    "w_min": "weight units",
    "w_max": "weight units",
    "sp_skew": "weight units",
    "sp_variability": "weight units",
    "n_states": "states",
    "up_down": "relative",
    "dw_min_dtod": "relative std",
    "w_max_dtod": "relative std",
    "up_down_dtod": "relative std",
    "dw_min_std": "relative std of dw_min",
    "write_noise_std": "multiples of dw_min",
    "transfer_noise": "output units (std)",
    "out_noise": "output units (std)",
    "dac_bits": "bits",
    "adc_bits": "bits",
    "fast_lr": "relative (aihwkit auto scale)",
    "transfer_every": "images (scaled per layer by tokens per image)",
    "in_chop_prob": "probability",
    "in_chop_random": "true: random flips; false: regular, all columns at once",
    "forget_buffer": "true / false",
    "momentum": "fraction of a transfer",
    "auto_granularity": "images (scaled per layer by tokens per image)",
    "update_bl": "pulses",
    "transfer_bl": "pulses",
    "weight_scaling_omega": "fraction of w_max",
}


def listing() -> dict[str, Any]:
    """Everything a client needs to build a spec: JSON-able, no torch."""
    device_knobs = _field_docs(DeviceSpec)
    algo_knobs = _field_docs(AlgorithmOptions)
    for docs in (device_knobs, algo_knobs):
        for name, doc in docs.items():
            if name in KNOB_UNITS:
                doc["unit"] = KNOB_UNITS[name]
    return {
        "families": {
            name: {k: (list(v) if isinstance(v, tuple) else v) for k, v in info.items()}
            for name, info in FAMILIES.items()
            if info["kind"] == "family"
        },
        "presets": {
            name: {k: (list(v) if isinstance(v, tuple) else v) for k, v in info.items()}
            for name, info in FAMILIES.items()
            if info["kind"] == "preset"
        },
        "io_defaults": dict(IO_DEFAULTS),
        "device_knobs": device_knobs,
        "algorithm_options": algo_knobs,
        "algorithms": {
            a: {"description": ALGORITHM_DOCS[a], "default_lr": DEFAULT_LR[a], "recipe": RECIPES[a].options()}
            for a in ALGORITHMS
        },
        "models": registry.listing(),
        # The paper's eleven non-idealities: which device knob is which (units and ranges above).
        "nonidealities": nonidealities.listing(),
        "datasets": {d: DATASET_DOCS[d] for d in DATASETS},
        "model_fields": _field_docs(ModelSpec),
        "data_fields": _field_docs(DataSpec),
        "training_fields": _field_docs(TrainingSpec),
    }


def digital_baseline_training(training: dict[str, Any]) -> dict[str, Any]:
    """The training section of a sweep's digital baseline, from the analog base's training
    section (a dict as sent, not validated): AdamW at the base's digital lr if it sets one,
    else the fp recipe's lr, for BASELINE_EPOCHS_FACTOR x the analog epochs, so the baseline is
    trained to convergence rather than to the analog job's budget (docs/study.md)."""
    out = dict(training)
    epochs = training.get("epochs") or TrainingSpec.model_fields["epochs"].default
    out["epochs"] = min(epochs * BASELINE_EPOCHS_FACTOR, MAX_EPOCHS)
    out["lr"] = training.get("digital_lr") or RECIPES["fp"].lr
    out["digital_lr"] = None
    return out
