"""`cttv2 train SPEC.yaml`: progress, result, and one-line errors without tracebacks."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

import cttv2_cli.train  # noqa: F401  (registers `train` on the group)
from cttv2_cli.main import cli
from tests.engine.conftest import tiny_spec


def _invoke(tmp_path, spec, *args):
    path = tmp_path / "job.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return CliRunner().invoke(
        cli, ["train", str(path), "--data-dir", str(tmp_path), "--weights-dir", str(tmp_path), *args]
    )


def test_train_runs_a_spec_and_writes_outputs(tmp_path):
    result = _invoke(tmp_path, tiny_spec(training={"epochs": 1}), "--workdir", str(tmp_path / "out"), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "completed on cpu: test accuracy" in result.output
    assert "epoch 1/1" in result.output
    assert (tmp_path / "out" / "weights.safetensors").is_file()
    assert (tmp_path / "out" / "checkpoints" / "latest.pt").is_file()


def test_bad_spec_field_is_one_line_per_error_naming_the_field(tmp_path):
    result = _invoke(tmp_path, tiny_spec(algorithm="c-ttv2", device={"dw_min": 0}))
    assert result.exit_code == 2
    assert "spec field device.dw_min: Input should be greater than 0" in result.output
    assert "Traceback" not in result.output
    result = _invoke(tmp_path, tiny_spec(model={"arch": "swin_micro", "img_size": 36}))
    assert result.exit_code == 2 and "spec field model:" in result.output
    result = _invoke(tmp_path, tiny_spec(data={"classes": [0, 99]}))
    assert result.exit_code == 2 and "spec field data.classes:" in result.output
    result = _invoke(tmp_path, "algorithm: [unclosed")
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_missing_dataset_is_a_one_line_error(tmp_path):
    spec = tiny_spec(data={"dataset": "cifar10", "classes": None, "num_classes": 2})
    result = _invoke(tmp_path, spec, "--workdir", str(tmp_path / "out"))
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "cifar-10-batches-py" in lines[0]
    assert "Traceback" not in result.output
