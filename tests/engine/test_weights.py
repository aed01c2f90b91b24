"""User weights: safe loading only, checked against the architecture."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from cttv2_engine.errors import WeightsError
from cttv2_engine.models import build_model
from cttv2_engine.weights import validate_weights_file


def _state(arch="swin_micro", classes=5):
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in build_model(arch, None, classes).state_dict().items()}


def test_safetensors_and_torch_state_dicts_validate(tmp_path):
    save_file(_state(classes=5), tmp_path / "a.safetensors", metadata={"note": "x"})
    info = validate_weights_file(tmp_path / "a.safetensors", "swin_micro", 32)
    assert info["format"] == "safetensors" and info["head_classes"] == 5
    assert info["metadata"] == {"note": "x"} and info["parameters"] > 90_000
    torch.save(_state(classes=7), tmp_path / "b.pt")
    assert validate_weights_file(tmp_path / "b.pt", "swin_micro", 32)["head_classes"] == 7
    torch.save({"state_dict": _state(classes=3)}, tmp_path / "c.pth")
    assert validate_weights_file(tmp_path / "c.pth", "swin_micro", 32)["head_classes"] == 3
    headless = {k: v for k, v in _state().items() if not k.startswith("head.")}
    save_file(headless, tmp_path / "d.safetensors")
    assert validate_weights_file(tmp_path / "d.safetensors", "swin_micro", 32)["head_classes"] is None


def test_weights_of_another_architecture_are_rejected(tmp_path):
    save_file(_state("swin_mini"), tmp_path / "mini.safetensors")
    with pytest.raises(WeightsError, match="does not fit swin_micro at img_size 32") as info:
        validate_weights_file(tmp_path / "mini.safetensors", "swin_micro", 32)
    assert "missing" in str(info.value) or "wrong shape" in str(info.value)
    state = _state()
    state["layers.0.blocks.0.mlp.fc1.weight"] = torch.zeros(3, 3)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError, match="wrong shape.*mlp.fc1.weight"):
        validate_weights_file(tmp_path / "bad.safetensors", "swin_micro", 32)
    state = _state()
    state["head.fc.weight"] = torch.zeros(5, 17)
    save_file(state, tmp_path / "head.safetensors")
    with pytest.raises(WeightsError, match="classification head"):
        validate_weights_file(tmp_path / "head.safetensors", "swin_micro", 32)


def test_untileable_size_is_rejected_before_reading(tmp_path):
    with pytest.raises(ValueError, match="cannot take img_size 36"):
        validate_weights_file(tmp_path / "nothing.pt", "swin_micro", 36)


class _Payload:
    """Unpickling this would create a file: proof the loader never executes a pickle."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_with_code_is_rejected_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "evil.pt"  # a bare pickle (torch's legacy format)
    with open(raw, "wb") as fh:
        pickle.dump({"head.fc.weight": _Payload(str(marker))}, fh)
    zipped = tmp_path / "evil2.pth"  # torch.save's zip format with the same payload
    torch.save({"w": _Payload(str(marker))}, zipped)
    for path in (raw, zipped):
        with pytest.raises(WeightsError, match="refusing to load"):
            validate_weights_file(path, "swin_micro", 32)
    assert not marker.exists()
    # the same pickle does run code when loaded unsafely: the marker test is meaningful
    with open(raw, "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_junk_files_are_clear_errors(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="not a valid safetensors"):
        validate_weights_file(tmp_path / "junk.safetensors", "swin_micro", 32)
    torch.save({"a": 1, "b": "text"}, tmp_path / "numbers.pt")
    with pytest.raises(WeightsError, match="state dict of tensors"):
        validate_weights_file(tmp_path / "numbers.pt", "swin_micro", 32)
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(WeightsError, match="must be .safetensors"):
        validate_weights_file(tmp_path / "model.bin", "swin_micro", 32)
    with pytest.raises(WeightsError, match="not found"):
        validate_weights_file(tmp_path / "absent.safetensors", "swin_micro", 32)
