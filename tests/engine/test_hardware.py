"""Compute hardware selection (CPU/CUDA), with the CUDA probes injected (this machine has no GPU)."""

from __future__ import annotations

import pytest

from cttv2_engine.errors import HardwareError
from cttv2_engine.hardware import select_compute


def probes(compiled: bool, available: bool, name: str | None = "NVIDIA H200"):
    return {"aihwkit_cuda": lambda: compiled, "torch_cuda": lambda: available, "gpu": lambda: name}


@pytest.mark.parametrize(
    "compiled, available, expected",
    [(True, True, "cuda"), (True, False, "cpu"), (False, True, "cpu"), (False, False, "cpu")],
)
def test_auto_uses_cuda_only_when_both_present(compiled, available, expected):
    compute = select_compute("auto", **probes(compiled, available))
    assert compute.kind == expected
    assert compute.aihwkit_cuda_compiled is compiled and compute.torch_cuda_available is available
    assert (compute.gpu_name == "NVIDIA H200") is (expected == "cuda")


def test_cpu_is_always_cpu():
    assert select_compute("cpu", **probes(True, True)).kind == "cpu"


def test_cuda_request_names_what_is_missing():
    assert select_compute("cuda", **probes(True, True)).kind == "cuda"
    with pytest.raises(HardwareError, match="aihwkit was built without CUDA") as info:
        select_compute("cuda", **probes(False, True))
    assert "torch sees no CUDA GPU" not in str(info.value)
    with pytest.raises(HardwareError, match="torch sees no CUDA GPU") as info:
        select_compute("cuda", **probes(True, False))
    assert "aihwkit" not in str(info.value)
    with pytest.raises(HardwareError, match="aihwkit was built without CUDA.*and torch sees no"):
        select_compute("cuda", **probes(False, False))


def test_unknown_device_is_rejected():
    with pytest.raises(HardwareError):
        select_compute("tpu", **probes(True, True))


def test_real_probes_on_this_machine():
    compute = select_compute("auto")
    expected = "cuda" if compute.aihwkit_cuda_compiled and compute.torch_cuda_available else "cpu"
    assert compute.kind == expected
    assert compute.describe().startswith("CUDA" if expected == "cuda" else "CPU")
