"""Spec -> the model to train (pretrained weights loaded, analog scope converted) and its
optimizers. The training loop in ``train.py`` only sees a ``TrainModel``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cttv2_engine import models
from cttv2_engine.errors import SpecError, WeightsError
from cttv2_engine.presets import DEFAULT_LR
from cttv2_engine.registry import scope_prefixes
from cttv2_engine.spec import SAFE_NAME, JobRef, JobSpec, WeightsRef
from cttv2_engine.types import RunContext
from cttv2_engine.weights import WEIGHT_SUFFIXES, check_state_dict, load_into, read_state_dict

DEFAULT_DIGITAL_LR = 1e-3


@dataclass
class TrainModel:
    model: nn.Module
    spec: JobSpec
    analog_layers: list[str]
    digital_params: list[nn.Parameter]
    construction_seed: int | None
    num_tiles: int = 0
    num_parameters: int = 0
    num_trainable_digital: int = 0
    tokens: dict[str, int] = field(default_factory=dict)

    def make_optimizers(self) -> list[torch.optim.Optimizer]:
        """[digital AdamW] (+ [AnalogSGD over the tiles] for analog algorithms).

        Built after any checkpoint restore (aihwkit replaces tile contexts on load). The
        analog lr is what aihwkit's tiles get: for the Tiki-Taka family it scales the
        transfer into the slow weights; fast_lr sets the fast tile's step (docs/engine.md).
        """
        training = self.spec.training
        lr = training.lr or DEFAULT_LR[self.spec.algorithm]
        optimizers: list[torch.optim.Optimizer] = []
        if self.spec.algorithm == "fp":
            digital_lr = lr
        else:
            digital_lr = training.digital_lr or DEFAULT_DIGITAL_LR
        if self.digital_params:
            optimizers.append(torch.optim.AdamW(self.digital_params, lr=digital_lr, weight_decay=training.weight_decay))
        if self.analog_layers:
            from aihwkit.optim import AnalogSGD

            optimizers.append(AnalogSGD(models.analog_parameters(self.model), lr=lr))
        if not optimizers:
            raise SpecError(
                "nothing to train: no analog layers and all digital parts frozen", field="model.analog_scope"
            )
        for opt in optimizers:
            for group in opt.param_groups:
                group["initial_lr"] = group["lr"]
        return optimizers


def build_train_model(
    spec: JobSpec,
    num_classes: int,
    context: RunContext,
    torch_device: torch.device,
    *,
    log: Callable[[str], None] = lambda line: None,
    load_pretrained: bool = True,
) -> TrainModel:
    arch, img_size = spec.model.arch, spec.model.input_size
    model = models.build_model(arch, img_size, num_classes)
    if load_pretrained and spec.model.pretrained is not None:
        _load_pretrained(model, spec, num_classes, context, log)

    analog = spec.algorithm != "fp"
    pretrain = spec.training.kind == "pretrain"
    prefixes = [""] if pretrain else scope_prefixes(arch, spec.model.analog_scope)
    train_all = pretrain or spec.model.digital_parts == "trained"
    analog_layers = models.analog_layer_names(model, prefixes) if analog else []
    tokens: dict[str, int] = {}
    construction_seed = None
    if analog_layers:
        model, tokens, construction_seed = _convert(model, spec, analog_layers, img_size, log)
    model = model.to(torch_device)
    digital = models.digital_parameters(model, prefixes, train_all)
    tm = TrainModel(model, spec, analog_layers, digital, construction_seed, tokens=tokens)
    tm.num_tiles = sum(1 for _ in _tiles(model))
    tm.num_parameters = sum(p.numel() for p in model.parameters())
    tm.num_trainable_digital = sum(p.numel() for p in digital)
    scope = "all (pretrain)" if pretrain else _scope_text(spec)
    log(
        f"model: {arch} at {img_size}px, {num_classes} classes, "
        f"{len(analog_layers)} analog layers ({tm.num_tiles} tiles), scope {scope}, "
        f"{tm.num_trainable_digital} trainable digital parameters"
    )
    return tm


def _scope_text(spec: JobSpec) -> str:
    scope = spec.model.analog_scope
    text = scope if isinstance(scope, str) else f"last {scope.last_n_blocks} blocks"
    return f"{text}, digital parts {spec.model.digital_parts}"


def _convert(
    model: nn.Module, spec: JobSpec, names: list[str], img_size: int, log: Callable[[str], None]
) -> tuple[nn.Module, dict[str, int], int]:
    from aihwkit.nn.conversion import convert_to_analog

    from cttv2_engine.devices import build_rpu_config, never_transfers, per_layer_config, resolved_options

    assert spec.device is not None
    tokens = models.tokens_per_sample(model, img_size, names)
    # aihwkit treats construction_seed 0 as "draw one at random": derive a fixed one.
    base_seed = spec.device.construction_seed or (spec.training.seed % 1_000_000 + 1)
    config = build_rpu_config(spec.algorithm, spec.device, spec.algorithm_options)
    index = {name: i for i, name in enumerate(names)}
    before = {n: m.weight.detach().clone() for n, m in model.named_modules() if n in index}

    never: list[str] = []

    def layer_config(name: str, module: nn.Module, cfg: Any) -> Any:
        # A distinct device population per layer, reproducible from the base seed.
        _set_construction_seed(cfg, base_seed + 7919 * index.get(name, 0))
        cfg = per_layer_config(cfg, tokens.get(name, 1))
        if name in index and never_transfers(cfg):
            never.append(name)
        return cfg

    exclude = [n for n, m in model.named_modules() if isinstance(m, models.ANALOG_CAPABLE) and n not in index]
    model = convert_to_analog(
        model, config, specific_rpu_config_fun=layer_config, exclude_modules=exclude, inplace=True
    )
    if never:
        every = resolved_options(spec.algorithm, spec.algorithm_options).transfer_every
        log(
            f"warning: {len(never)} analog layer(s) never transfer into their slow tile: they see too "
            f"few tokens per image for a read of A every {every} image, and aihwkit rounds the period "
            f"to 0 updates ({', '.join(never)}; docs/engine.md)"
        )
    # Write noise perturbs every weight as it is written: a read-back that differs is not a clip.
    clipped, total = (0, 0) if spec.device.write_noise_std else _count_clipped(model, before)
    if clipped:
        log(
            f"warning: {clipped} of {total} weights ({100 * clipped / total:.3f}%) were clipped "
            "to the device bounds when loaded into analog tiles"
        )
    return model, tokens, base_seed


def _set_construction_seed(cfg: Any, seed: int) -> None:
    device = getattr(cfg, "device", None)
    stack = [device] if device is not None else []
    while stack:
        obj = stack.pop()
        if hasattr(obj, "construction_seed"):
            obj.construction_seed = seed
        stack.extend(getattr(obj, "unit_cell_devices", []) or [])
        inner = getattr(obj, "device", None)
        if inner is not None and not isinstance(inner, (str, torch.device)):
            stack.append(inner)


@torch.no_grad()
def _count_clipped(model: nn.Module, before: dict[str, torch.Tensor]) -> tuple[int, int]:
    clipped = total = 0
    modules = dict(model.named_modules())
    for name, weight in before.items():
        layer = modules[name]
        if not hasattr(layer, "get_weights"):
            continue
        now, _ = layer.get_weights()
        now = now.reshape(weight.shape)
        clipped += int(((now - weight).abs() > 1e-6).sum())
        total += weight.numel()
    return clipped, max(total, 1)


def _tiles(model: nn.Module):
    try:
        from aihwkit.simulator.tiles.module import TileModule
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, TileModule):
            yield module


def resolve_pretrained(spec: JobSpec, context: RunContext) -> Path:
    """The file behind ``model.pretrained``: a plain name in the weights dir, or an earlier
    job's weights through the service's resolver. Never a user-typed path."""
    ref = spec.model.pretrained
    if isinstance(ref, WeightsRef):
        name = ref.weights
        if not SAFE_NAME.match(name) or not name.lower().endswith(WEIGHT_SUFFIXES):
            raise WeightsError("must be a plain .safetensors/.pt/.pth file name", field="model.pretrained.weights")
        root = Path(context.weights_dir).resolve()
        path = (root / name).resolve()
        if path.parent != root:
            raise WeightsError("must name a file directly inside the weights dir", field="model.pretrained.weights")
        if not path.is_file():
            raise WeightsError(f"no weights file {name!r} in the weights dir", field="model.pretrained.weights")
        return path
    assert isinstance(ref, JobRef)
    if context.job_weights is None:
        raise WeightsError("pretrained.job needs the service (no job store here)", field="model.pretrained.job")
    path = Path(context.job_weights(ref.job))
    if not path.is_file():
        raise WeightsError(f"job {ref.job} has no trained weights", field="model.pretrained.job")
    return path


def _load_pretrained(
    model: nn.Module, spec: JobSpec, num_classes: int, context: RunContext, log: Callable[[str], None]
) -> None:
    path = resolve_pretrained(spec, context)
    tensors, _ = read_state_dict(path)
    check_state_dict(tensors, spec.model.arch, spec.model.input_size, path.name)
    head_loaded = load_into(model, tensors, spec.model.arch)
    log(f"pretrained: {path.name}" + ("" if head_loaded else f" (head re-initialized for {num_classes} classes)"))


def preflight(spec: JobSpec, context: RunContext) -> None:
    """Checks that need files but no training: dataset present, pretrained weights fit."""
    from cttv2_engine.data import load_dataset

    load_dataset(spec.data, Path(context.data_dir), spec.model.input_size)
    if spec.model.pretrained is not None:
        path = resolve_pretrained(spec, context)
        tensors, _ = read_state_dict(path)
        check_state_dict(tensors, spec.model.arch, spec.model.input_size, path.name)
