"""Digital weights in and out: safe loading, checking against an architecture, the final
``weights.safetensors`` of a run, and rebuilding + evaluating a model from it.

User-supplied files are only ever read by ``safetensors`` or ``torch.load(weights_only=True)``:
a pickle that carries code is rejected without running it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cttv2_engine.errors import WeightsError
from cttv2_engine.files import atomic_write
from cttv2_engine.registry import check_model, get_model_config

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) from a safetensors file or a torch state-dict file, safely."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path.name}", field="model.pretrained")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(f"{path.name}: weights must be .safetensors, .pt or .pth", field="model.pretrained")
    if suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
            raise WeightsError(
                f"{path.name} is not a valid safetensors file ({exc})", field="model.pretrained"
            ) from None
        return tensors, meta
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError for code, others for junk
        reason = str(exc).splitlines()[0][:200]
        raise WeightsError(
            f"{path.name} is not a plain tensor state dict; refusing to load it ({reason})",
            field="model.pretrained",
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # the common {"state_dict": ...} wrapper
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsError(f"{path.name} does not hold a state dict of tensors", field="model.pretrained")
    return dict(obj), {}


def _reference_state(arch: str, img_size: int | None) -> dict[str, torch.Tensor]:
    from cttv2_engine.models import build_model

    return build_model(arch, img_size, num_classes=2).state_dict()


def check_state_dict(
    tensors: dict[str, torch.Tensor], arch: str, img_size: int | None, name: str = "weights"
) -> int | None:
    """Raise WeightsError unless every non-head tensor fits the arch; return the head's
    class count (None when the file has no head)."""
    reference = _reference_state(arch, img_size)
    cfg = get_model_config(arch)
    size = img_size or cfg.img_size
    head = cfg.head_prefix + "."
    body = {k for k in reference if not k.startswith(head)}
    missing = sorted(body - set(tensors))
    unexpected = sorted(k for k in tensors if k not in reference and not k.startswith(head))
    wrong = sorted(
        f"{k} {tuple(tensors[k].shape)} != {tuple(reference[k].shape)}"
        for k in body & set(tensors)
        if tensors[k].shape != reference[k].shape
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {'; '.join(wrong[:2])})")
        raise WeightsError(
            f"{name} does not fit {arch} at img_size {size}: " + ", ".join(parts),
            field="model.pretrained",
        )
    head_w = tensors.get(f"{cfg.head}.weight")
    if head_w is None:
        return None
    feat = reference[f"{cfg.head}.weight"].shape[1]
    if head_w.ndim != 2 or head_w.shape[1] != feat:
        raise WeightsError(
            f"{name}: classification head takes {tuple(head_w.shape)}, {arch} needs (*, {feat})",
            field="model.pretrained",
        )
    return int(head_w.shape[0])


def validate_weights_file(path: Path, arch: str, img_size: int | None) -> dict[str, Any]:
    """Check a (user-uploaded) weights file against an architecture without training anything.

    Returns a summary (tensor/parameter counts, head classes, metadata). The head may differ
    in size: it is re-initialized for the new task.
    """
    check_model(arch, img_size)
    path = Path(path)
    tensors, meta = read_state_dict(path)
    head = check_state_dict(tensors, arch, img_size, path.name)
    return {
        "format": "safetensors" if path.suffix.lower() == ".safetensors" else "torch",
        "tensors": len(tensors),
        "parameters": int(sum(t.numel() for t in tensors.values())),
        "head_classes": head,
        "metadata": meta,
    }


def load_into(model: nn.Module, tensors: dict[str, torch.Tensor], arch: str) -> bool:
    """Copy checked weights into ``model`` (of ``arch``); the head only when its class count
    matches. Returns whether the head was loaded."""
    state = model.state_dict()
    head = get_model_config(arch).head_prefix + "."
    head_fits = all(k in tensors and tensors[k].shape == state[k].shape for k in state if k.startswith(head))
    chosen = {k: v for k, v in tensors.items() if k in state and (head_fits or not k.startswith(head))}
    model.load_state_dict(chosen, strict=False)
    return head_fits


def save_final_weights(path: Path, model: nn.Module, metadata: dict[str, Any]) -> None:
    """Atomically write a digital model's state dict as safetensors with string metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    with atomic_write(path) as tmp:
        save_file(tensors, tmp, metadata=meta)


def read_metadata(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        raw = dict(fh.metadata() or {})
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def load_trained_model(weights_path: Path) -> nn.Module:
    """Rebuild the digital model from a ``weights.safetensors`` written by ``run()``."""
    from cttv2_engine.models import build_model

    meta = read_metadata(weights_path)
    for key in ("arch", "img_size", "num_classes"):
        if key not in meta:
            raise WeightsError(f"{Path(weights_path).name} lacks the {key!r} metadata of a run")
    tensors, _ = read_state_dict(Path(weights_path))
    model = build_model(meta["arch"], int(meta["img_size"]), int(meta["num_classes"]))
    model.load_state_dict(tensors, strict=True)
    return model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, spec: Any, context: Any, batch_size: int = 256) -> dict[str, float]:
    """Test loss / accuracy / error of ``model`` on the spec's test split (digital or analog)."""
    from cttv2_engine.data import load_dataset
    from cttv2_engine.spec import JobSpec

    spec = JobSpec.model_validate(spec) if not isinstance(spec, JobSpec) else spec
    img_size = spec.model.input_size
    data = load_dataset(spec.data, Path(context.data_dir), img_size)
    device = next(model.parameters()).device
    return evaluate_split(model, data.test, img_size, device, batch_size)


@torch.no_grad()
def evaluate_split(
    model: nn.Module, split: Any, img_size: int, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    from cttv2_engine.data import test_batches, to_model_input

    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for images, labels in test_batches(split, batch_size):
        x = to_model_input(images, img_size, device)
        labels = labels.to(device)
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
        n += len(labels)
    model.train(was_training)
    acc = correct / max(n, 1)
    return {"test_loss": loss_sum / max(n, 1), "test_accuracy": acc, "test_error": 1.0 - acc}
