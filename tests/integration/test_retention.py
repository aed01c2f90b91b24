"""Checkpoint retention (CTTV2_KEEP_CHECKPOINTS) through the real stack: once a job succeeds,
the worker deletes the checkpoints the setting does not keep, row and file together; a resume
from a deleted checkpoint is a 422 naming it. The default keeps best and latest (every other
test's jobs show that)."""

from __future__ import annotations

import pytest

from service.artifacts.paths import job_dir
from tests.support.specs import TINY_FP, spec
from tests.support.stack import running_stack, wait_for_job

pytestmark = [pytest.mark.slow]


def test_keep_best_deletes_latest_once_the_job_succeeded(tmp_path):
    with running_stack("embedded", tmp_path / "retention", {"CTTV2_KEEP_CHECKPOINTS": "best"}) as s:
        client = s.client(s.create_user())
        job_id = client.post("/v1/jobs", json=spec(TINY_FP, name="keep-best")).json()["id"]
        assert wait_for_job(client, job_id, stack=s)["status"] == "succeeded"
        names = {a["name"] for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}
        assert "checkpoints/best.pt" in names and "checkpoints/latest.pt" not in names, names
        folder = job_dir(s.env["CTTV2_ARTIFACT_DIR"], job_id)
        assert (folder / "checkpoints" / "best.pt").is_file()
        assert not (folder / "checkpoints" / "latest.pt").exists()
        assert client.get(f"/v1/jobs/{job_id}/artifacts/checkpoints/latest.pt").status_code == 404

        more = spec(TINY_FP, name="more", resume_from={"job": job_id, "checkpoint": "latest"})
        more["training"]["epochs"] = 3
        r = client.post("/v1/jobs", json=more)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["fields"][0]["field"] == "resume_from.checkpoint"
        more["resume_from"]["checkpoint"] = "best"
        r = client.post("/v1/jobs", json=more)
        assert r.status_code == 201, r.text
