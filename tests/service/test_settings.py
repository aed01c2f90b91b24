"""A bad setting stops the process with one clear line naming it, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.stack import ROOT


@pytest.mark.parametrize(
    ("var", "value", "expect"),
    [
        ("CTTV2_DATABASE_URL", "mysql://x/y", "CTTV2_DATABASE_URL"),
        ("CTTV2_BROKER_URL", "amqp://nope", "CTTV2_BROKER_URL"),
        ("CTTV2_HEARTBEAT_INTERVAL_S", "-1", "CTTV2_HEARTBEAT_INTERVAL_S"),
        ("CTTV2_DEVICE", "tpu", "CTTV2_DEVICE"),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["worker"], ["db", "upgrade"]])
def test_bad_setting_is_one_clear_line(tmp_path, var, value, expect, command):
    env = {"CTTV2_STATE_DIR": str(tmp_path), var: value, "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [sys.executable, "-m", "cttv2_cli", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert expect in lines[0] and "bad setting" in lines[0]
    assert "Traceback" not in res.stderr
