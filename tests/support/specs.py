"""Tiny job specs that finish in seconds on this CPU (the swin_micro model on digits)."""

from __future__ import annotations

import copy
from typing import Any

TINY_FP: dict[str, Any] = {
    "name": "tiny-fp",
    "algorithm": "fp",
    "model": {"arch": "swin_micro", "analog_scope": "all", "digital_parts": "trained"},
    "data": {"dataset": "digits", "classes": [0, 1, 2], "train_per_class": 24, "test_per_class": 8},
    "training": {"epochs": 2, "batch_size": 16, "lr": 0.003, "seed": 1},
}

TINY_CTTV2: dict[str, Any] = {
    "name": "tiny-cttv2",
    "algorithm": "c-ttv2",
    "device": {"family": "SoftBoundsReference", "dw_min": 0.01},
    "model": {"arch": "swin_micro", "analog_scope": "head"},
    "data": {"dataset": "digits", "classes": [0, 1, 2], "train_per_class": 24, "test_per_class": 8},
    "training": {"epochs": 2, "batch_size": 16, "seed": 1},
}


def spec(base: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A deep copy of base with dotted-path overrides, e.g. spec(TINY_FP, **{"training.epochs": 5})."""
    out = copy.deepcopy(base)
    for path, value in overrides.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
