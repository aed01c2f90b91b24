"""Which compute device a run uses. The probes are injectable so the CUDA cases are testable
on a machine without a GPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cttv2_engine.errors import HardwareError


@dataclass(frozen=True)
class Hardware:
    device: str  # "cpu" or "cuda"
    aihwkit_cuda_compiled: bool
    torch_cuda_available: bool
    gpu_name: str | None = None

    def describe(self) -> str:
        if self.device == "cuda":
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


def select_device(
    requested: str,
    *,
    aihwkit_cuda: Callable[[], bool] = aihwkit_cuda_compiled,
    torch_cuda: Callable[[], bool] = torch_cuda_available,
    gpu: Callable[[], str | None] = gpu_name,
) -> Hardware:
    """auto: CUDA when aihwkit has CUDA compiled in and torch sees a GPU, else CPU.
    cuda: both are required; a clear error names whichever is missing."""
    if requested not in ("auto", "cpu", "cuda"):
        raise HardwareError(f"device must be auto, cpu or cuda, not {requested!r}")
    compiled = aihwkit_cuda()
    available = torch_cuda()
    if requested == "cpu":
        return Hardware("cpu", compiled, available)
    if compiled and available:
        return Hardware("cuda", compiled, available, gpu())
    if requested == "cuda":
        missing = []
        if not compiled:
            missing.append("aihwkit was built without CUDA (aihwkit.simulator.rpu_base.cuda."
                           "is_compiled() is False; a CUDA build of aihwkit is needed)")
        if not available:
            missing.append("torch sees no CUDA GPU (torch.cuda.is_available() is False)")
        raise HardwareError("device cuda requested but " + " and ".join(missing))
    return Hardware("cpu", compiled, available)
