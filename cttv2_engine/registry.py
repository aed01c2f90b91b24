"""Named model configs as plain data (no torch), and the size check the API runs at submit time.

Every entry names a timm Swin builder plus the overrides that make it; ``cttv2_engine.models``
is the one builder that turns an entry into a network. Keeping this torch-free lets the API
reject an unknown arch or an untileable image size before a job is queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    name: str
    timm_name: str  # the timm builder (built with pretrained=False: nothing is downloaded)
    img_size: int  # default input size
    patch_size: int
    window_size: int
    depths: tuple[int, ...]
    embed_dim: int
    num_heads: tuple[int, ...]
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    description: str = ""
    # Extra timm kwargs beyond the fields above (plain data only).
    extra: dict[str, Any] = field(default_factory=dict)

    def timm_kwargs(self, img_size: int | None = None) -> dict[str, Any]:
        return dict(
            img_size=img_size or self.img_size,
            patch_size=self.patch_size,
            window_size=self.window_size,
            depths=self.depths,
            embed_dim=self.embed_dim,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            drop_path_rate=self.drop_path_rate,
            **self.extra,
        )


def _timm_swin(
    name: str, img: int, window: int, embed: int, depths: Sequence[int], heads: Sequence[int], desc: str
) -> ModelConfig:
    return ModelConfig(name, name, img, 4, window, tuple(depths), embed, tuple(heads), 4.0, 0.1, desc)


MODELS: dict[str, ModelConfig] = {
    c.name: c
    for c in [
        # CPU-sized: the study's CIFAR setting (32x32 input) at a size that trains in seconds.
        ModelConfig(
            "swin_micro",
            "swin_tiny_patch4_window7_224",
            img_size=32,
            patch_size=4,
            window_size=4,
            depths=(2, 2),
            embed_dim=32,
            num_heads=(2, 4),
            mlp_ratio=2.0,
            drop_path_rate=0.0,
            description="2-stage Swin, 95k parameters, 32x32 input: tests and demos on CPU",
        ),
        ModelConfig(
            "swin_mini",
            "swin_tiny_patch4_window7_224",
            img_size=32,
            patch_size=4,
            window_size=4,
            depths=(2, 2, 2),
            embed_dim=48,
            num_heads=(3, 6, 12),
            mlp_ratio=2.0,
            drop_path_rate=0.0,
            description="3-stage Swin, ~0.8M parameters, 32x32 input",
        ),
        ModelConfig(
            "swin_tiny_cifar",
            "swin_tiny_patch4_window7_224",
            img_size=32,
            patch_size=4,
            window_size=4,
            depths=(2, 2, 6, 2),
            embed_dim=96,
            num_heads=(3, 6, 12, 24),
            description="Swin-T widths with a 4x4 window for 32x32 input (the study's CIFAR model)",
        ),
        # The timm Swin family at its published shapes.
        _timm_swin("swin_tiny_patch4_window7_224", 224, 7, 96, (2, 2, 6, 2), (3, 6, 12, 24), "Swin-T"),
        _timm_swin("swin_small_patch4_window7_224", 224, 7, 96, (2, 2, 18, 2), (3, 6, 12, 24), "Swin-S"),
        _timm_swin("swin_base_patch4_window7_224", 224, 7, 128, (2, 2, 18, 2), (4, 8, 16, 32), "Swin-B"),
        _timm_swin("swin_base_patch4_window12_384", 384, 12, 128, (2, 2, 18, 2), (4, 8, 16, 32), "Swin-B/384"),
        _timm_swin("swin_large_patch4_window7_224", 224, 7, 192, (2, 2, 18, 2), (6, 12, 24, 48), "Swin-L"),
        _timm_swin("swin_large_patch4_window12_384", 384, 12, 192, (2, 2, 18, 2), (6, 12, 24, 48), "Swin-L/384"),
    ]
}


def get_model_config(arch: str) -> ModelConfig:
    try:
        return MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(sorted(MODELS))}") from None


def stage_resolutions(arch: str, img_size: int | None = None) -> list[int]:
    """Token-grid side length at each stage (patch grid, then halved by each patch merging)."""
    cfg = get_model_config(arch)
    size = img_size or cfg.img_size
    grid = size // cfg.patch_size
    return [grid // 2**i for i in range(len(cfg.depths))]


def check_model(arch: str, img_size: int | None = None) -> None:
    """Raise ValueError unless the original Swin tiling works for this arch at this size.

    timm pads inputs and windows that do not tile, which silently changes the model (padded
    windows, a patch grid pretrained weights never saw); we require exact tiling instead:
    the patch size divides the image, each patch merging halves an even grid, and every
    stage's grid is a multiple of its window (timm shrinks a window larger than the grid).
    """
    cfg = get_model_config(arch)
    size = img_size or cfg.img_size
    problem = _tiling_problem(cfg, size)
    if problem:
        raise ValueError(
            f"{arch} cannot take img_size {size}: {problem} (nearest size that works: "
            f"{_nearest_tiling_size(cfg, size)})"
        )


def _tiling_problem(cfg: ModelConfig, size: int) -> str | None:
    if size % cfg.patch_size:
        return f"the patch size {cfg.patch_size} does not divide it"
    grid = size // cfg.patch_size
    for stage in range(len(cfg.depths)):
        if stage > 0:
            if grid % 2:
                return f"stage {stage} would halve an odd {grid}x{grid} token grid"
            grid //= 2
        window = min(cfg.window_size, grid)
        if grid % window:
            return f"stage {stage}'s {grid}x{grid} token grid is not a multiple of the window size {cfg.window_size}"
    return None


def _nearest_tiling_size(cfg: ModelConfig, near: int) -> int:
    for delta in range(2048):
        for cand in (near - delta, near + delta):
            if cand >= 8 and _tiling_problem(cfg, cand) is None:
                return cand
    return cfg.img_size


def listing() -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "img_size": c.img_size,
            "patch_size": c.patch_size,
            "window_size": c.window_size,
            "depths": list(c.depths),
            "embed_dim": c.embed_dim,
            "description": c.description,
        }
        for c in MODELS.values()
    ]
