"""Bad jobs fail with a clear error before any training starts."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file

from cttv2_engine import (
    DataError,
    EngineError,
    HardwareError,
    SpecError,
    WeightsError,
    preflight,
    run,
)
from cttv2_engine.spec import JobSpec
from tests.engine.conftest import Recorder, tiny_spec


def _fails_before_training(tmp_path, context, spec, error, match):
    rec = Recorder()
    with pytest.raises(error, match=match) as info:
        run(spec, workdir=tmp_path / "job", callbacks=rec, context=context)
    assert rec.progress == [] and rec.metrics == [] and rec.checkpoints == []
    assert not (tmp_path / "job").exists()  # nothing written for a job that cannot run
    return info.value


def test_untileable_arch_size(tmp_path, context):
    spec = tiny_spec(model={"arch": "swin_tiny_patch4_window7_224", "img_size": 32})
    err = _fails_before_training(
        tmp_path, context, spec, ValidationError, "window size 7 does not|not a multiple of the window size 7"
    )
    assert "nearest size that works: 224" in str(err)


def test_missing_dataset_names_the_expected_path(tmp_path, context):
    spec = tiny_spec(data={"dataset": "cifar100", "classes": None, "num_classes": 5})
    err = _fails_before_training(tmp_path, context, spec, DataError, "cifar-100-python")
    assert str(context.data_dir) in str(err) and isinstance(err, EngineError)
    with pytest.raises(DataError):
        preflight(JobSpec.model_validate(spec), context)


def test_missing_weights_file(tmp_path, context):
    spec = tiny_spec(model={"pretrained": {"weights": "nope.safetensors"}})
    err = _fails_before_training(tmp_path, context, spec, WeightsError, "no weights file 'nope")
    assert err.field == "model.pretrained.weights"


def test_mismatched_weights_file(tmp_path, context):
    from cttv2_engine.models import build_model

    save_file(
        {k: v.contiguous() for k, v in build_model("swin_mini", None, 10).state_dict().items()},
        context.weights_dir / "mini.safetensors",
    )
    spec = tiny_spec(model={"pretrained": {"weights": "mini.safetensors"}})
    _fails_before_training(tmp_path, context, spec, WeightsError, "does not fit swin_micro")
    (context.weights_dir / "notes.txt").write_text("hi")
    spec = tiny_spec(model={"pretrained": {"weights": "notes.txt"}})
    _fails_before_training(tmp_path, context, spec, WeightsError, "file name")


def test_pretrained_job_needs_the_service(tmp_path, context):
    spec = tiny_spec(model={"pretrained": {"job": 7}})
    _fails_before_training(tmp_path, context, spec, WeightsError, "needs the service")
    context.job_weights = lambda job: context.weights_dir / f"job-{job}.safetensors"
    _fails_before_training(tmp_path, context, spec, WeightsError, "job 7 has no trained weights")


@pytest.mark.parametrize(
    "device", [{"dw_min": 0.0}, {"w_max": -1}, {"n_states": 1}, {"write_noise_std": -1}, {"adc_bits": 40}]
)
def test_out_of_range_knobs(tmp_path, context, device):
    spec = tiny_spec(algorithm="c-ttv2", device=device)
    err = _fails_before_training(tmp_path, context, spec, ValidationError, "device")
    assert err.errors()[0]["loc"][0] == "device"


def test_bad_class_selection(tmp_path, context):
    spec = tiny_spec(data={"classes": [3, 12]})
    err = _fails_before_training(tmp_path, context, spec, SpecError, "out of range")
    assert err.field == "data.classes"


def test_cuda_requested_without_cuda(tmp_path, context):
    from cttv2_engine.hardware import aihwkit_cuda_compiled

    if aihwkit_cuda_compiled() and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    context.compute = "cuda"
    _fails_before_training(tmp_path, context, tiny_spec(), HardwareError, "device cuda requested")


def test_pretrained_weights_load_with_head_reinitialized(tmp_path, context):
    """The happy path of the checks above: matching weights with another class count."""
    from cttv2_engine.models import build_model

    torch.manual_seed(5)
    source = build_model("swin_micro", None, 10)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, context.weights_dir / "base.safetensors")
    spec = JobSpec.model_validate(
        tiny_spec(model={"pretrained": {"weights": "base.safetensors"}}, training={"epochs": 1, "lr": 1e-9})
    )
    rec = Recorder()
    run(spec, workdir=tmp_path / "job", callbacks=rec, context=context)
    assert any("head re-initialized for 3 classes" in line for line in rec.logs)
    from safetensors.torch import load_file

    trained = load_file(tmp_path / "job" / "weights.safetensors")
    key = "layers.0.blocks.0.attn.qkv.weight"
    assert torch.allclose(trained[key], source.state_dict()[key], atol=1e-6)
    assert trained["head.fc.weight"].shape == (3, 64)
