"""The one model builder: a registry name -> a timm Swin, and which of its layers are in scope.

Scope names are module-name prefixes of timm's SwinTransformer (``patch_embed``,
``layers.S.downsample``, ``layers.S.blocks.B``, ``norm``, ``head``); everything analog-related
(conversion, freezing, per-layer transfer rates) is expressed through them.
"""

from __future__ import annotations

import torch
from torch import nn

from cttv2_engine.registry import check_model, get_model_config
from cttv2_engine.spec import AnalogScope, LastNBlocks

ANALOG_CAPABLE = (nn.Linear, nn.Conv2d)


def build_model(arch: str, img_size: int | None, num_classes: int) -> nn.Module:
    """A freshly initialized digital Swin (timm, never downloaded)."""
    import timm

    check_model(arch, img_size)
    cfg = get_model_config(arch)
    return timm.create_model(cfg.timm_name, pretrained=False, num_classes=num_classes, **cfg.timm_kwargs(img_size))


def scope_prefixes(arch: str, scope: AnalogScope) -> list[str]:
    """Module-name prefixes that the analog scope covers (analog layers + their digital parts)."""
    depths = get_model_config(arch).depths
    if scope == "all":
        return [""]
    if scope == "head":
        return ["head"]
    if scope == "last_stage":
        return [f"layers.{len(depths) - 1}", "norm", "head"]
    assert isinstance(scope, LastNBlocks)
    blocks = [(s, b) for s, depth in enumerate(depths) for b in range(depth)]
    if scope.last_n_blocks >= len(blocks):
        return [""]
    chosen = blocks[-scope.last_n_blocks :]
    prefixes = [f"layers.{s}.blocks.{b}" for s, b in chosen]
    # A stage's patch merging joins the scope once all of that stage's blocks are in it.
    for stage, depth in enumerate(depths):
        if sum(1 for s, _ in chosen if s == stage) == depth:
            prefixes.append(f"layers.{stage}.downsample")
    return prefixes + ["norm", "head"]


def in_scope(name: str, prefixes: list[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def analog_layer_names(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Names of the Linear / Conv2d layers that become analog tiles."""
    return [name for name, mod in model.named_modules() if isinstance(mod, ANALOG_CAPABLE) and in_scope(name, prefixes)]


@torch.no_grad()
def tokens_per_sample(model: nn.Module, img_size: int, names: list[str]) -> dict[str, int]:
    """How many mat-vecs each layer does per input image (Linear: tokens; Conv2d: positions).

    aihwkit counts every token as one update for the transfer schedule, so a per-sample
    ``transfer_every`` and ``auto_granularity`` are scaled by this per layer (docs/engine.md).
    """
    counts: dict[str, int] = {}
    modules = dict(model.named_modules())

    def hook(name: str):
        def fn(mod: nn.Module, inputs, output) -> None:
            if isinstance(mod, nn.Conv2d):
                counts[name] = int(output.shape[-1] * output.shape[-2])
            else:
                counts[name] = int(inputs[0].numel() // inputs[0].shape[-1])

        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, 3, img_size, img_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counts


def digital_parameters(model: nn.Module, prefixes: list[str], train_all: bool) -> list[nn.Parameter]:
    """Digital parameters to train: those inside the scope, or all when digital_parts=trained.
    Everything else is frozen (requires_grad False)."""
    from aihwkit.optim.context import AnalogContext

    chosen = []
    for name, param in model.named_parameters():
        if isinstance(param, AnalogContext):
            continue
        module_name = name.rsplit(".", 1)[0] if "." in name else ""
        train = train_all or in_scope(module_name, prefixes)
        param.requires_grad_(train)
        if train:
            chosen.append(param)
    return chosen


def analog_parameters(model: nn.Module) -> list[nn.Parameter]:
    from aihwkit.optim.context import AnalogContext

    return [p for p in model.parameters() if isinstance(p, AnalogContext)]


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classification head (re-initialized when the class count changes)."""
    return {k for k in model.state_dict() if k.startswith("head.")}
