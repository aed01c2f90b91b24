"""cttv2_engine: the c-TTv2 Swin-ViT transfer-learning engine on IBM aihwkit.

Importing the package (and ``spec``, ``types``, ``registry``, ``presets``, ``semantics``)
never imports torch: the API uses those without it. ``run`` and the other torch-backed
entry points load on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cttv2_engine.errors import (
    CheckpointError,
    DataError,
    EngineError,
    HardwareError,
    SpecError,
    WeightsError,
)
from cttv2_engine.semantics import validate_spec_semantics
from cttv2_engine.spec import JobSpec
from cttv2_engine.types import Callbacks, NullCallbacks, Progress, RunContext, RunResult

if TYPE_CHECKING:  # pragma: no cover
    from cttv2_engine.build import preflight
    from cttv2_engine.train import run

__all__ = [
    "Callbacks",
    "CheckpointError",
    "DataError",
    "EngineError",
    "HardwareError",
    "JobSpec",
    "NullCallbacks",
    "Progress",
    "RunContext",
    "RunResult",
    "SpecError",
    "WeightsError",
    "preflight",
    "run",
    "validate_spec_semantics",
]

_LAZY = {"run": ("cttv2_engine.train", "run"), "preflight": ("cttv2_engine.build", "preflight")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cttv2_engine' has no attribute {name!r}")
