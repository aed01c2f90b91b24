"""The SDK's parts that need no server: config resolution, the SSE parser, Retry-After, spec
files and overrides, model tolerance, metrics frames, the text progress line."""

from __future__ import annotations

import io
import os
import stat
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from cttv2_client import Client, ConfigError, Job, Metrics, SpecFileError, SweepReport, config
from cttv2_client.progress import TextDisplay
from cttv2_client.specfile import apply_overrides, load_document
from cttv2_client.sse import SSEParser, iter_events
from cttv2_client.transport import RetryPolicy, parse_retry_after


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    for var in (config.URL_ENV, config.TOKEN_ENV, config.CONFIG_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_settings_come_from_args_then_env_then_file(no_env, monkeypatch):
    with pytest.raises(ConfigError, match="cttv2 login"):
        Client()
    path = config.save(config.Settings(url="http://file:1/", token='tok"en\\with\nodd chars é'))
    assert path == no_env / "xdg" / "cttv2" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a token
    saved = config.load_file()
    assert saved.token == 'tok"en\\with\nodd chars é' and saved.url == "http://file:1/"
    assert config.resolve().url == "http://file:1"  # trailing slash dropped

    monkeypatch.setenv(config.URL_ENV, "http://env:2")
    monkeypatch.setenv(config.TOKEN_ENV, "envtoken")
    assert config.resolve() == config.Settings("http://env:2", "envtoken")
    assert config.resolve("http://arg:3", "argtoken") == config.Settings("http://arg:3", "argtoken")

    client = Client()
    assert client.base_url == "http://env:2"
    assert client._transport.http.headers["Authorization"] == "Bearer envtoken"
    client.close()


def test_config_file_can_be_named_and_bad_files_are_reported(no_env, monkeypatch):
    custom = no_env / "elsewhere.toml"
    monkeypatch.setenv(config.CONFIG_ENV, str(custom))
    custom.write_text('url = "http://x:9"\n')
    assert config.resolve().url == "http://x:9" and config.resolve().token is None
    custom.write_text("url = [unclosed\n")
    with pytest.raises(ConfigError, match="elsewhere.toml"):
        config.resolve()


def test_sse_parser_follows_the_event_stream_format():
    stream = [
        ": keep-alive",
        "id: 1",
        "event: status",
        'data: {"status": "queued"}',
        "",
        "id: 2",
        "event: progress",
        'data: {"step": 1,',
        'data:  "total_steps": 4}',
        "",
        "retry: 1500",
        "",  # a blank line with no data dispatches nothing
        "data: plain text",
        "",
        "id: 3",
        "event: metrics",
        'data:{"values": {"train_loss": 0.5}}',
        "",
        "id: 4",
        "data: unfinished",  # no blank line: not dispatched
    ]
    parser = SSEParser()
    events = list(iter_events(stream, parser))
    assert [(e.id, e.event) for e in events] == [("1", "status"), ("2", "progress"), ("2", "message"), ("3", "metrics")]
    assert events[0].data == {"status": "queued"}
    assert events[1].data == {"step": 1, "total_steps": 4}
    assert events[2].data == "plain text"
    assert events[3].data == {"values": {"train_loss": 0.5}}
    assert parser.retry_ms == 1500
    assert parser.last_event_id == "3"  # event 4 never completed: resume after 3
    parser.reset()
    assert next(iter(iter_events(["data: x", ""], parser))).id == "3"


def test_retry_after_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0, max_retry_after=60)
    assert policy.delay(1, retry_after=120) == 60  # the server's hint, capped
    for attempt, cap in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 8.0)):
        for _ in range(20):
            assert cap / 2 <= policy.delay(attempt) <= cap


def test_spec_documents_and_overrides(tmp_path):
    (tmp_path / "job.yaml").write_text("name: a\ntraining:\n  epochs: 3\n")
    doc = load_document(tmp_path / "job.yaml")
    assert doc == {"name": "a", "training": {"epochs": 3}}
    apply_overrides(doc, {"training.epochs": 1, "model.pretrained": {"job": 4}, "name": "b"})
    assert doc == {"name": "b", "training": {"epochs": 1}, "model": {"pretrained": {"job": 4}}}
    (tmp_path / "job.json").write_text('{"algorithm": "fp"}')
    assert load_document(str(tmp_path / "job.json")) == {"algorithm": "fp"}
    original = {"training": {"epochs": 3}}
    apply_overrides(load_document(original), {"training.epochs": 9})
    assert original == {"training": {"epochs": 3}}  # the caller's dict is not modified
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    for name, message in (("missing.yaml", "no such file"), ("list.yaml", "mapping"), ("bad.yaml", "invalid YAML")):
        with pytest.raises(SpecFileError, match=message):
            load_document(tmp_path / name)


def test_models_keep_fields_a_newer_server_adds():
    job = Job.model_validate(
        {
            "id": 1,
            "status": "paused",
            "future_field": {"x": 1},
            "progress": {"epoch": 1, "epochs": 2, "step": 3, "total_steps": 6, "gpu": 0},
        }
    )
    assert job.status == "paused" and not job.done
    assert job.future_field == {"x": 1}  # type: ignore[attr-defined]
    assert job.progress.fraction == 0.5


def test_metrics_to_pandas():
    pd = pytest.importorskip("pandas")
    m = Metrics.model_validate(
        {
            "items": [
                {"key": "train_loss", "step": 10, "epoch": 1, "value": 2.0},
                {"key": "test_accuracy", "step": 10, "epoch": 1, "value": 0.5},
                {"key": "train_loss", "step": 20, "epoch": 2, "value": 1.0},
            ]
        }
    )
    wide = m.to_pandas()
    assert list(wide.index) == [10, 20]
    assert list(wide.columns) == ["epoch", "test_accuracy", "train_loss"]
    assert wide.loc[20, "train_loss"] == 1.0 and pd.isna(wide.loc[20, "test_accuracy"])
    assert len(m.to_pandas(wide=False)) == 3
    assert m.series("train_loss") == [(10, 2.0), (20, 1.0)] and m.last("test_accuracy") == 0.5
    report = SweepReport.model_validate(
        {
            "sweep_id": 1,
            "axes": ["device.transfer_noise"],
            "rows": [{"point": {"device.transfer_noise": 0.1}, "mean_test_error": 0.2, "n_finished": 2, "n_seeds": 2}],
        }
    )
    frame = report.to_pandas()
    assert frame.loc[0, "device.transfer_noise"] == 0.1 and frame.loc[0, "mean_test_error"] == 0.2


def test_text_progress_line():
    out = io.StringIO()
    display = TextDisplay("job 7", stream=out, rewrite=False)
    base = {"id": 7, "status": "running"}
    display.update(Job.model_validate({**base, "status": "queued"}))
    display.update(
        Job.model_validate(
            {
                **base,
                "progress": {
                    "epoch": 1,
                    "epochs": 2,
                    "step": 5,
                    "total_steps": 10,
                    "images_per_s": 120.0,
                    "eta_s": 4.0,
                },
            }
        )
    )
    display.update(
        Job.model_validate(
            {
                **base,
                "progress": {
                    "epoch": 1,
                    "epochs": 2,
                    "step": 5,
                    "total_steps": 10,
                    "images_per_s": 120.0,
                    "eta_s": 4.0,
                },
            }
        )
    )  # same: no line
    display.close()
    lines = out.getvalue().splitlines()
    assert lines == ["job 7  queued", "job 7 [##########..........]  50%  running  epoch 1/2  120 img/s  ETA 4s"]
    out = io.StringIO()
    display = TextDisplay("job 7", stream=out, rewrite=True)
    display.update(Job.model_validate({**base, "status": "queued"}))
    display.update(Job.model_validate({**base, "status": "succeeded", "result": {"test_accuracy": 0.9}}))
    display.close()
    assert out.getvalue() == "\rjob 7  queued\rjob 7  succeeded  test accuracy 90.0%\n"


def test_the_package_imports_without_the_server(tmp_path):
    """cttv2_client must not reach into the server packages or the optional extras at import
    (the install test proves the dependency list; this catches a stray import early)."""
    import subprocess
    import sys

    sdk = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "sdk"))
    code = (
        "import sys, cttv2_client, cttv2_client.client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'service', 'worker', 'cttv2_engine', "
        "'cttv2_cli', 'torch', 'fastapi', 'sqlalchemy', 'yaml', 'pandas'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": sdk},
    )
    assert out.stdout.strip() == "[]", out.stdout
