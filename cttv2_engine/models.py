"""The one model builder: a registry name -> a timm Swin or ResNet, and which of its layers are
in scope.

Scope names are module-name prefixes of timm's models, named by the registry's config (Swin:
``patch_embed``, ``layers.S.downsample``, ``layers.S.blocks.B``, ``norm``, ``head``; ResNet:
``conv1``, ``layerS.B``, ``fc``); everything analog-related (conversion, freezing, per-layer
transfer rates) is expressed through them. Every Linear and Conv2d in scope becomes an analog
tile; norms (LayerNorm, BatchNorm), biases and position tables stay digital.
"""

from __future__ import annotations

import torch
from torch import nn

from cttv2_engine.registry import check_model, get_model_config, in_scope

ANALOG_CAPABLE = (nn.Linear, nn.Conv2d)


def build_model(arch: str, img_size: int | None, num_classes: int) -> nn.Module:
    """A freshly initialized digital Swin or ResNet (timm, never downloaded)."""
    import timm

    check_model(arch, img_size)
    cfg = get_model_config(arch)
    model = timm.create_model(cfg.timm_name, pretrained=False, num_classes=num_classes, **cfg.timm_kwargs(img_size))
    if cfg.cifar_stem:
        # The standard CIFAR ResNet stem: one 3x3 stride-1 conv into bn1, and no max-pool.
        model.conv1 = nn.Conv2d(3, cfg.channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


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
