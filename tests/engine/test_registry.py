"""The model registry: every entry builds (Swin and ResNet, one builder), its listed parameter
and analog-tile counts are the built model's, every analog scope means the same for both
families, and the CPU-sized models convert to analog tiles and run under every scope."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cttv2_engine.build import build_train_model
from cttv2_engine.devices import build_rpu_config
from cttv2_engine.models import analog_layer_names, build_model
from cttv2_engine.registry import MODELS, TILE_SIZE, check_model, scope_prefixes, stage_resolutions, tiles_of
from cttv2_engine.spec import JobSpec, LastNBlocks
from cttv2_engine.types import RunContext
from cttv2_engine.weights import check_state_dict, load_into

SCOPES = ("all", "last_stage", "head")
CPU_SIZED = ("swin_micro", "resnet_micro")


@pytest.mark.parametrize("arch", list(MODELS))
def test_listed_counts_are_the_built_models(arch):
    cfg = MODELS[arch]
    with torch.device("meta"):  # shapes only: Swin-L builds in a blink, allocating nothing
        model = build_model(arch, None, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == cfg.parameters
    modules = dict(model.named_modules())

    def shape(name: str) -> tuple[int, int]:
        m = modules[name]
        if isinstance(m, nn.Conv2d):
            return m.in_channels * m.kernel_size[0] * m.kernel_size[1], m.out_channels
        return m.in_features, m.out_features

    built = analog_layer_names(model, [""])
    assert [(n, *shape(n)) for n in built] == cfg.analog_layers(10)
    for scope in SCOPES:
        names = analog_layer_names(model, scope_prefixes(arch, scope))
        listed = cfg.analog_tiles()[scope]
        assert listed == {"layers": len(names), "tiles": sum(tiles_of(*shape(n)) for n in names)}, scope
    head = dict(model.named_modules())[cfg.head]
    assert isinstance(head, nn.Linear) and head.out_features == 10
    check_model(arch)
    assert stage_resolutions(arch)[-1] >= 1


@pytest.mark.parametrize("arch", [a for a in MODELS if MODELS[a].family == "resnet"])
def test_resnets_use_the_cifar_stem_where_named_and_timms_otherwise(arch):
    cfg = MODELS[arch]
    with torch.device("meta"):
        model = build_model(arch, None, num_classes=10)
    if cfg.cifar_stem:
        assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
        assert isinstance(model.maxpool, nn.Identity)
    else:
        assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
        assert isinstance(model.maxpool, nn.MaxPool2d)
    sizes = stage_resolutions(arch)
    assert sizes[-1] * 2 ** (len(cfg.depths) - 1) == sizes[0]
    assert sizes[0] == cfg.img_size // (1 if cfg.cifar_stem else 4)


def test_a_resnet_size_that_does_not_halve_evenly_is_refused_with_the_nearest_that_does():
    check_model("resnet18", 224)
    check_model("resnet18_cifar", 64)
    with pytest.raises(
        ValueError, match=r"resnet18 cannot take img_size 100: .*multiple of 32.*nearest size that works: 96"
    ):
        check_model("resnet18", 100)


def test_scopes_mean_the_same_for_both_families():
    """all: every layer; head: the classifier; last_stage: the last stage and the classifier;
    last_n_blocks: the last blocks, their stage's entry once the whole stage is in, the head."""
    swin, resnet = MODELS["swin_micro"], MODELS["resnet_micro"]
    assert scope_prefixes("swin_micro", "head") == ["head"] and scope_prefixes("resnet_micro", "head") == ["fc"]
    assert scope_prefixes("swin_micro", "last_stage") == ["layers.1", "norm", "head"]
    assert scope_prefixes("resnet_micro", "last_stage") == ["layer4", "fc"]
    assert scope_prefixes("resnet_micro", LastNBlocks(last_n_blocks=2)) == ["layer3.0", "layer4.0", "fc"]
    assert scope_prefixes("swin_micro", LastNBlocks(last_n_blocks=2)) == [
        "layers.1.blocks.0",
        "layers.1.blocks.1",
        "layers.1.downsample",
        "norm",
        "head",
    ]
    for cfg in (swin, resnet):
        assert scope_prefixes(cfg.name, LastNBlocks(last_n_blocks=sum(cfg.depths))) == [""]


def _spec(arch: str, scope) -> JobSpec:
    return JobSpec.model_validate(
        {
            "algorithm": "c-ttv2",
            "model": {"arch": arch, "analog_scope": scope, "digital_parts": "trained"},
            "data": {"dataset": "digits", "num_classes": 5},
        }
    )


@pytest.mark.parametrize("arch", CPU_SIZED)
@pytest.mark.parametrize("scope", [*SCOPES, {"last_n_blocks": 1}])
def test_cpu_sized_models_convert_and_run_under_every_scope(arch, scope, tmp_path):
    from aihwkit.nn import AnalogConv2d, AnalogLinear

    spec = _spec(arch, scope)
    ctx = RunContext(data_dir=tmp_path, weights_dir=tmp_path)
    tm = build_train_model(spec, 5, ctx, torch.device("cpu"))
    analog = [m for m in tm.model.modules() if isinstance(m, (AnalogLinear, AnalogConv2d))]
    assert len(analog) == len(tm.analog_layers)
    if isinstance(scope, str):  # the listed counts are what aihwkit builds
        listed = MODELS[arch].analog_tiles(num_classes=5)[scope]
        assert (len(tm.analog_layers), tm.num_tiles) == (listed["layers"], listed["tiles"])
    mapping = build_rpu_config("c-ttv2", spec.device, spec.algorithm_options).mapping
    assert (mapping.max_input_size, mapping.max_output_size) == (TILE_SIZE, TILE_SIZE)
    # Norms stay digital and are what AdamW trains; nothing digital is left that could be a tile.
    norms = [m for m in tm.model.modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))]
    assert norms and all(not isinstance(m, (AnalogLinear, AnalogConv2d)) for m in norms)
    trained = {id(p) for p in tm.digital_params}
    assert all(id(p) in trained for m in norms for p in m.parameters())
    out = tm.model(torch.zeros(2, 3, spec.model.input_size, spec.model.input_size))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    if scope == "all":
        conv = [m for m in analog if isinstance(m, AnalogConv2d)]
        assert conv, "the stem / patch conv is analog too"


def test_a_resnet_checkpoint_chains_into_a_fine_tune_with_a_new_head():
    """What pretrained: {job} does: the body loads, the 5-class head of the pretrain does not fit
    10 classes and is re-initialized."""
    pre = build_model("resnet_micro", None, num_classes=5)
    tensors = pre.state_dict()
    assert check_state_dict(tensors, "resnet_micro", None) == 5
    fresh = build_model("resnet_micro", None, num_classes=10)
    assert load_into(fresh, tensors, "resnet_micro") is False
    assert torch.equal(fresh.state_dict()["layer1.0.conv1.weight"], tensors["layer1.0.conv1.weight"])
    same = build_model("resnet_micro", None, num_classes=5)
    assert load_into(same, tensors, "resnet_micro") is True
    assert torch.equal(same.state_dict()["fc.weight"], tensors["fc.weight"])
    with pytest.raises(Exception, match="does not fit swin_micro"):
        check_state_dict(tensors, "swin_micro", None)


@pytest.mark.parametrize(
    ("arch", "frozen"),
    [
        ("swin_micro", ["head.fc"]),
        ("resnet_micro", ["layer4.0.conv1", "layer4.0.conv2", "layer4.0.downsample.0", "fc"]),
    ],
)
def test_layers_with_too_few_tokens_for_the_recipes_transfer_period_are_named(arch, frozen, tmp_path):
    """aihwkit 1.1.0 rounds a transfer period to whole updates: at the recipe's read of A every
    1/16 image, a layer with fewer than 8 tokens (pixels) per image is never read into its slow
    tile. The engine says which (docs/engine.md); here, on a real tile, that C does not move."""
    from cttv2_engine.devices import never_transfers

    lines: list[str] = []
    spec = _spec(arch, "all")
    tm = build_train_model(
        spec, 5, RunContext(data_dir=tmp_path, weights_dir=tmp_path), torch.device("cpu"), log=lines.append
    )
    warning = next(line for line in lines if "never transfer" in line)
    assert warning.endswith(f"({', '.join(frozen)}; docs/engine.md)"), warning
    assert [n for n, t in tm.tokens.items() if t * 0.0625 < 0.5] == frozen
    from aihwkit.nn import AnalogLinear

    layer = AnalogLinear(4, 4, bias=False, rpu_config=build_rpu_config("c-ttv2", spec.device, spec.algorithm_options))
    (tile,) = list(layer.analog_tiles())
    assert never_transfers(tile.rpu_config) is True  # one token per image: 1/16 of an update
    tile.set_weights(torch.zeros(4, 4))
    tile.set_learning_rate(3.0)
    for _ in range(300):
        tile.update(torch.ones(1, 4), torch.ones(1, 4))
    hidden = tile.get_hidden_parameters()
    assert hidden["hidden_weights_0"].abs().max() > 0.5  # A gathered the gradient...
    assert tile.get_weights()[0].abs().max() == 0  # ...and C never got any of it
