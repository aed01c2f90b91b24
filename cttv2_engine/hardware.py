"""Which compute hardware (CPU or CUDA) a run trains on. "Device" in the engine means the
analog memory cell (``spec.device``); the compute side is a ``ComputeTarget``. The probes are
injectable so the CUDA cases are testable on a machine without a GPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cttv2_engine.errors import HardwareError

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class ComputeTarget:
    kind: Literal["cpu", "cuda"]
    aihwkit_cuda_compiled: bool
    torch_cuda_available: bool
    gpu_name: str | None = None

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.kind)

    def describe(self) -> str:
        if self.kind == "cuda":
            return f"CUDA ({self.gpu_name})"
        reasons = []
        if not self.aihwkit_cuda_compiled:
            reasons.append("aihwkit built without CUDA")
        if not self.torch_cuda_available:
            reasons.append("no CUDA GPU visible to torch")
        return "CPU" + (f" ({'; '.join(reasons)})" if reasons else "")


def aihwkit_cuda_compiled() -> bool:
    from aihwkit.simulator.rpu_base import cuda

    return bool(cuda.is_compiled())


def torch_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def select_compute(
    requested: str,
    *,
    aihwkit_cuda: Callable[[], bool] = aihwkit_cuda_compiled,
    torch_cuda: Callable[[], bool] = torch_cuda_available,
    gpu: Callable[[], str | None] = gpu_name,
) -> ComputeTarget:
    """auto: CUDA when aihwkit has CUDA compiled in and torch sees a GPU, else CPU.
    cuda: both are required; a clear error names whichever is missing."""
    # The messages say "device": that is the setting's public name (CTTV2_DEVICE, --device).
    if requested not in ("auto", "cpu", "cuda"):
        raise HardwareError(f"device must be auto, cpu or cuda, not {requested!r}")
    compiled = aihwkit_cuda()
    available = torch_cuda()
    if requested == "cpu":
        return ComputeTarget("cpu", compiled, available)
    if compiled and available:
        return ComputeTarget("cuda", compiled, available, gpu())
    if requested == "cuda":
        missing = []
        if not compiled:
            missing.append(
                "aihwkit was built without CUDA (aihwkit.simulator.rpu_base.cuda."
                "is_compiled() is False; a CUDA build of aihwkit is needed)"
            )
        if not available:
            missing.append("torch sees no CUDA GPU (torch.cuda.is_available() is False)")
        raise HardwareError("device cuda requested but " + " and ".join(missing))
    return ComputeTarget("cpu", compiled, available)
