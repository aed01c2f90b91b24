"""Named model configs as plain data (no torch), and the size check the API runs at submit time.

Every entry names a family (Swin or ResNet), a timm builder and the overrides that make it;
``cttv2_engine.models`` is the one builder that turns an entry into a network. The module names
an analog scope resolves to (stages, blocks, head) are the config's too, so both families mean
the same by "all", "head", "last_stage" and "last_n_blocks". Keeping this torch-free lets the
API reject an unknown arch or an untileable image size before a job is queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# The model families, each built by one timm class (cttv2_engine.models.build_model).
ModelFamily = Literal["swin", "resnet"]


@dataclass(frozen=True)
class ModelConfig:
    name: str
    family: ModelFamily
    timm_name: str  # the timm builder (built with pretrained=False: nothing is downloaded)
    img_size: int  # default input size
    depths: tuple[int, ...]  # blocks per stage
    description: str = ""
    # Swin: patch embedding, attention windows, widths.
    patch_size: int = 4
    window_size: int = 7
    embed_dim: int = 96
    num_heads: tuple[int, ...] = ()
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    # ResNet (basic blocks): each stage's width, and the CIFAR stem (one 3x3 stride-1 conv and no
    # max-pool, for 32x32 input) instead of ImageNet's 7x7 stride-2 conv and max-pool.
    channels: tuple[int, ...] = ()
    cifar_stem: bool = False
    # Measured on the built model (tests/engine/test_registry.py checks both): parameters with a
    # 10-class head, and analog tiles per analog scope (one per Linear / Conv2d in it).
    parameters: int = 0
    # Extra timm kwargs beyond the fields above (plain data only).
    extra: dict[str, Any] = field(default_factory=dict)

    def timm_kwargs(self, img_size: int | None = None) -> dict[str, Any]:
        if self.family == "resnet":
            kwargs: dict[str, Any] = dict(layers=self.depths, channels=self.channels)
            if self.cifar_stem:
                # A "deep" stem's width is channels[0] after its last conv; the builder then
                # replaces that stem by the single 3x3 conv (timm's plain stem is always 64 wide).
                kwargs.update(stem_type="deep", stem_width=self.channels[0] // 2)
            return kwargs | self.extra
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

    # -- module names (timm's), for analog scopes and the head --------------------------------
    @property
    def head(self) -> str:
        """The classifier's Linear (re-initialized when the class count changes)."""
        return "fc" if self.family == "resnet" else "head.fc"

    @property
    def head_prefix(self) -> str:
        """The head's module prefix: everything under it belongs to the classifier."""
        return "fc" if self.family == "resnet" else "head"

    @property
    def final_norm(self) -> list[str]:
        """Digital modules between the last stage and the head (Swin's final LayerNorm)."""
        return [] if self.family == "resnet" else ["norm"]

    def stage(self, s: int) -> str:
        return f"layer{s + 1}" if self.family == "resnet" else f"layers.{s}"

    def block(self, s: int, b: int) -> str:
        return f"layer{s + 1}.{b}" if self.family == "resnet" else f"layers.{s}.blocks.{b}"

    def stage_entry(self, s: int) -> str | None:
        """What a stage does before its blocks, outside them: Swin's patch merging (stages > 0);
        a ResNet's downsampling shortcut lives inside the stage's first block."""
        return None if self.family == "resnet" or s == 0 else f"layers.{s}.downsample"

    # -- analog layers and tiles, from the config (no torch) ------------------------------------
    def analog_layers(self, num_classes: int = 10) -> list[tuple[str, int, int]]:
        """(module name, input size, output size) of every Linear / Conv2d, as its tile sees it
        (a conv's input size is in_channels x kernel area)."""
        if self.family == "resnet":
            width = self.channels[0] if self.cifar_stem else 64  # what the stem hands layer1
            out = [("conv1", 3 * (9 if self.cifar_stem else 49), width)]
            for s, (depth, planes) in enumerate(zip(self.depths, self.channels, strict=True)):
                for b in range(depth):
                    name = self.block(s, b)
                    out += [(f"{name}.conv1", width * 9, planes), (f"{name}.conv2", planes * 9, planes)]
                    if b == 0 and (s > 0 or width != planes):  # the shortcut's 1x1 conv
                        out.append((f"{name}.downsample.0", width, planes))
                    width = planes
            return out + [("fc", width, num_classes)]
        dims = [self.embed_dim * 2**s for s in range(len(self.depths))]
        out = [("patch_embed.proj", 3 * self.patch_size**2, dims[0])]
        for s, (depth, dim) in enumerate(zip(self.depths, dims, strict=True)):
            entry = self.stage_entry(s)
            if entry is not None:  # patch merging: 2x2 tokens of the previous stage, halved
                out.append((f"{entry}.reduction", 4 * dims[s - 1], dim))
            hidden = int(dim * self.mlp_ratio)
            for b in range(depth):
                name = self.block(s, b)
                out += [
                    (f"{name}.attn.qkv", dim, 3 * dim),
                    (f"{name}.attn.proj", dim, dim),
                    (f"{name}.mlp.fc1", dim, hidden),
                    (f"{name}.mlp.fc2", hidden, dim),
                ]
        return out + [("head.fc", dims[-1], num_classes)]

    def analog_tiles(self, num_classes: int = 10) -> dict[str, dict[str, int]]:
        """Analog layers and tiles of each analog scope: aihwkit splits a layer into tiles of at
        most TILE_SIZE inputs x TILE_SIZE outputs (its default mapping)."""
        out = {}
        for scope in ("all", "last_stage", "head"):
            prefixes = scope_prefixes(self.name, scope)
            chosen = [(i, o) for name, i, o in self.analog_layers(num_classes) if in_scope(name, prefixes)]
            out[scope] = {"layers": len(chosen), "tiles": sum(tiles_of(i, o) for i, o in chosen)}
        return out


# aihwkit's default MappingParameter (max_input_size, max_output_size): a larger layer is split
# over several tiles, each with its own devices (tests/engine/test_registry.py checks both).
TILE_SIZE = 512


def tiles_of(in_size: int, out_size: int) -> int:
    return -(-in_size // TILE_SIZE) * -(-out_size // TILE_SIZE)


def _timm_swin(
    name: str,
    img: int,
    window: int,
    embed: int,
    depths: Sequence[int],
    heads: Sequence[int],
    parameters: int,
    desc: str,
) -> ModelConfig:
    return ModelConfig(
        name,
        "swin",
        name,
        img,
        tuple(depths),
        desc,
        window_size=window,
        embed_dim=embed,
        num_heads=tuple(heads),
        parameters=parameters,
    )


def _resnet(
    name: str, timm_name: str, img: int, depths: Sequence[int], cifar: bool, parameters: int, desc: str
) -> ModelConfig:
    return ModelConfig(
        name,
        "resnet",
        timm_name,
        img,
        tuple(depths),
        desc,
        channels=(64, 128, 256, 512),
        cifar_stem=cifar,
        drop_path_rate=0.0,
        parameters=parameters,
    )


MODELS: dict[str, ModelConfig] = {
    c.name: c
    for c in [
        # CPU-sized: the study's CIFAR setting (32x32 input) at a size that trains in seconds.
        ModelConfig(
            "swin_micro",
            "swin",
            "swin_tiny_patch4_window7_224",
            img_size=32,
            depths=(2, 2),
            patch_size=4,
            window_size=4,
            embed_dim=32,
            num_heads=(2, 4),
            mlp_ratio=2.0,
            drop_path_rate=0.0,
            parameters=95_478,
            description="2-stage Swin, 32x32 input: tests and demos on CPU",
        ),
        ModelConfig(
            "swin_mini",
            "swin",
            "swin_tiny_patch4_window7_224",
            img_size=32,
            depths=(2, 2, 2),
            patch_size=4,
            window_size=4,
            embed_dim=48,
            num_heads=(3, 6, 12),
            mlp_ratio=2.0,
            drop_path_rate=0.0,
            parameters=880_708,
            description="3-stage Swin, 32x32 input",
        ),
        ModelConfig(
            "swin_tiny_cifar",
            "swin",
            "swin_tiny_patch4_window7_224",
            img_size=32,
            depths=(2, 2, 6, 2),
            patch_size=4,
            window_size=4,
            embed_dim=96,
            num_heads=(3, 6, 12, 24),
            parameters=27_505_300,
            description="Swin-T widths with a 4x4 window for 32x32 input (the study's CIFAR model)",
        ),
        # The timm Swin family at its published shapes.
        _timm_swin("swin_tiny_patch4_window7_224", 224, 7, 96, (2, 2, 6, 2), (3, 6, 12, 24), 27_527_044, "Swin-T"),
        _timm_swin("swin_small_patch4_window7_224", 224, 7, 96, (2, 2, 18, 2), (3, 6, 12, 24), 48_844_948, "Swin-S"),
        _timm_swin("swin_base_patch4_window7_224", 224, 7, 128, (2, 2, 18, 2), (4, 8, 16, 32), 86_753_474, "Swin-B"),
        _timm_swin(
            "swin_base_patch4_window12_384", 384, 12, 128, (2, 2, 18, 2), (4, 8, 16, 32), 86_888_834, "Swin-B/384"
        ),
        _timm_swin("swin_large_patch4_window7_224", 224, 7, 192, (2, 2, 18, 2), (6, 12, 24, 48), 195_010_846, "Swin-L"),
        _timm_swin(
            "swin_large_patch4_window12_384", 384, 12, 192, (2, 2, 18, 2), (6, 12, 24, 48), 195_213_886, "Swin-L/384"
        ),
        # ResNet with basic blocks: CPU-sized, the CIFAR variants (32x32), timm's published shapes.
        ModelConfig(
            "resnet_micro",
            "resnet",
            "resnet18",
            img_size=16,
            depths=(1, 1, 1, 1),
            channels=(16, 32, 64, 128),
            cifar_stem=True,
            drop_path_rate=0.0,
            parameters=308_826,
            description="4-stage CIFAR-style ResNet-10 (16-32-64-128 wide), 16x16 input (digits are 8x8): "
            "tests and demos on CPU",
        ),
        _resnet(
            "resnet18_cifar", "resnet18", 32, (2, 2, 2, 2), True, 11_173_962, "ResNet-18, CIFAR stem (3x3, no max-pool)"
        ),
        _resnet(
            "resnet34_cifar", "resnet34", 32, (3, 4, 6, 3), True, 21_282_122, "ResNet-34, CIFAR stem (3x3, no max-pool)"
        ),
        _resnet("resnet18", "resnet18", 224, (2, 2, 2, 2), False, 11_181_642, "ResNet-18 (timm, ImageNet stem)"),
        _resnet("resnet34", "resnet34", 224, (3, 4, 6, 3), False, 21_289_802, "ResNet-34 (timm, ImageNet stem)"),
    ]
}


def get_model_config(arch: str) -> ModelConfig:
    try:
        return MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(sorted(MODELS))}") from None


def scope_prefixes(arch: str, scope: Any) -> list[str]:
    """Module-name prefixes that an analog scope (spec.AnalogScope: "all", "head", "last_stage"
    or {last_n_blocks: N}) covers: its analog layers and their digital parts."""
    cfg = get_model_config(arch)
    depths = cfg.depths
    tail = [*cfg.final_norm, cfg.head_prefix]
    if scope == "all":
        return [""]
    if scope == "head":
        return [cfg.head_prefix]
    if scope == "last_stage":
        return [cfg.stage(len(depths) - 1), *tail]
    blocks = [(s, b) for s, depth in enumerate(depths) for b in range(depth)]
    if scope.last_n_blocks >= len(blocks):
        return [""]
    chosen = blocks[-scope.last_n_blocks :]
    prefixes = [cfg.block(s, b) for s, b in chosen]
    # A stage's entry (Swin's patch merging) joins the scope once all of that stage's blocks are in it.
    for stage, depth in enumerate(depths):
        entry = cfg.stage_entry(stage)
        if entry is not None and sum(1 for s, _ in chosen if s == stage) == depth:
            prefixes.append(entry)
    return prefixes + tail


def in_scope(name: str, prefixes: list[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def stage_resolutions(arch: str, img_size: int | None = None) -> list[int]:
    """Grid side length at each stage: Swin's token grid (patch grid, then halved by each patch
    merging); a ResNet's feature map (after the stem, then halved by each later stage)."""
    cfg = get_model_config(arch)
    size = img_size or cfg.img_size
    grid = size // _stem_stride(cfg)
    return [grid // 2**i for i in range(len(cfg.depths))]


def _stem_stride(cfg: ModelConfig) -> int:
    if cfg.family == "resnet":
        return 1 if cfg.cifar_stem else 4  # ImageNet stem: stride-2 conv, then stride-2 max-pool
    return cfg.patch_size


def check_model(arch: str, img_size: int | None = None) -> None:
    """Raise ValueError unless the arch takes this input size exactly.

    Swin: timm pads inputs and windows that do not tile, which silently changes the model
    (padded windows, a patch grid pretrained weights never saw); we require exact tiling
    instead: the patch size divides the image, each patch merging halves an even grid, and
    every stage's grid is a multiple of its window (timm shrinks a window larger than the
    grid). ResNet: every stride-2 step halves an even map (no rounded-off border).
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
    if cfg.family == "resnet":
        stride = _stem_stride(cfg) * 2 ** (len(cfg.depths) - 1)
        if size % stride:
            return (
                f"its {len(cfg.depths)} stages halve the input to 1/{stride}: the size must be a multiple of {stride}"
            )
        return None
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
    out = []
    for c in MODELS.values():
        entry: dict[str, Any] = {
            "name": c.name,
            "family": c.family,
            "img_size": c.img_size,
            "depths": list(c.depths),
            "parameters": c.parameters,
            "analog": c.analog_tiles(),  # per scope: {"layers": N, "tiles": N}, with 10 classes
            "description": c.description,
        }
        if c.family == "swin":
            entry.update(patch_size=c.patch_size, window_size=c.window_size, embed_dim=c.embed_dim)
        else:
            entry.update(channels=list(c.channels), cifar_stem=c.cifar_stem)
        out.append(entry)
    return out
