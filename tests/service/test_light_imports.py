"""The API process stays light: importing the app never imports torch, aihwkit or timm."""

from __future__ import annotations

import subprocess
import sys

from tests.support.stack import ROOT


def test_service_app_does_not_import_torch(tmp_path):
    code = (
        "import sys; import service.main; from service.main import create_app; create_app();"
        "import cttv2_engine, cttv2_engine.spec, cttv2_engine.presets, cttv2_engine.registry;"
        "heavy = sorted(m for m in ('torch', 'aihwkit', 'timm', 'torchvision') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"CTTV2_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert out.stdout.strip() == "", f"the API imported {out.stdout.strip()}"
