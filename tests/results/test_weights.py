"""POST /v1/weights: uploads stream to disk under a size limit, a worker validates them with
weights_only loading against the architecture, and a job fine-tunes from a valid one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.results.conftest import assert_error
from tests.support.specs import TINY_FP, spec
from tests.support.stack import wait_for_job
from tests.support.weights import upload, wait_validated


class RunsCode:
    """Unpickling this runs a shell command: the file a hostile user would upload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """swin_micro state dicts as safetensors and as a torch file, a misfit and a hostile pickle."""
    import torch
    from safetensors.torch import save_file

    from cttv2_engine.models import build_model

    root = tmp_path_factory.mktemp("weights")
    state = {k: v.contiguous() for k, v in build_model("swin_micro", None, num_classes=5).state_dict().items()}
    save_file(state, root / "micro.safetensors")
    torch.save(state, root / "micro.pt")
    misfit = dict(state)
    name = next(k for k in misfit if k.endswith("attn.qkv.weight"))
    misfit[name] = torch.zeros(3, 3)
    torch.save(misfit, root / "misfit.pt")
    marker = root / "code-ran"
    torch.save({"head.fc.weight": torch.zeros(2, 2), "x": RunsCode(marker)}, root / "evil.pt")
    (root / "big.pt").write_bytes(os.urandom(1536 * 1024))  # over the 1 MB limit of these stacks
    assert (root / "micro.safetensors").stat().st_size < (1 << 20)
    return root


def test_upload_validate_and_finetune(rstack, alice, bob, files):
    import hashlib

    r = upload(alice, files / "micro.safetensors")
    assert r.status_code == 201, r.text
    record = r.json()
    assert record["status"] == "pending" and record["name"] == "micro.safetensors"
    assert record["sha256"] == hashlib.sha256((files / "micro.safetensors").read_bytes()).hexdigest()
    assert record["size"] == (files / "micro.safetensors").stat().st_size and record["arch"] == "swin_micro"
    assert wait_validated(alice, record["id"])["status"] == "valid"

    tune = spec(
        TINY_FP, name="from-upload", **{"model.pretrained": {"weights": "micro.safetensors"}, "training.epochs": 1}
    )
    job = alice.post("/v1/jobs", json=tune)
    assert job.status_code == 201, job.text

    # Uploaded while the worker trains: its check waits, and a job cannot use it yet.
    pending = upload(alice, files / "micro.pt", name="micro-torch.pt")
    assert pending.status_code == 201, pending.text
    assert alice.get(f"/v1/weights/{pending.json()['id']}").json()["status"] == "pending"
    refused = alice.post("/v1/jobs", json=spec(tune, **{"model.pretrained.weights": "micro-torch.pt"}))
    err = assert_error(refused, 422, "model.pretrained.weights")
    assert "validated" in err["message"]

    done = wait_for_job(alice, job.json()["id"], timeout=120, stack=rstack)
    assert done["status"] == "succeeded", done
    logs = alice.get(f"/v1/jobs/{done['id']}/logs").json()["lines"]
    assert any(line.startswith("pretrained: micro.safetensors") for line in logs), logs
    assert wait_validated(alice, pending.json()["id"])["status"] == "valid"

    # Another user sees none of it and cannot use the name.
    assert_error(bob.get(f"/v1/weights/{record['id']}"), 404)
    assert bob.get("/v1/weights").json()["items"] == []
    assert_error(bob.post("/v1/jobs", json=tune), 422, "model.pretrained.weights")
    names = [w["name"] for w in alice.get("/v1/weights").json()["items"]]
    assert names == ["micro-torch.pt", "micro.safetensors"]  # newest first


def test_pickle_with_code_is_rejected_and_never_runs(alice, files):
    marker = files / "code-ran"
    r = upload(alice, files / "evil.pt")
    assert r.status_code == 201, r.text
    record = wait_validated(alice, r.json()["id"])
    assert record["status"] == "invalid" and "refusing" in record["error"], record
    assert not marker.exists()
    job = alice.post("/v1/jobs", json=spec(TINY_FP, **{"model.pretrained": {"weights": "evil.pt"}}))
    assert "failed validation" in assert_error(job, 422, "model.pretrained.weights")["message"]


def test_weights_that_do_not_fit_the_architecture_are_invalid(alice, files):
    r = upload(alice, files / "misfit.pt")
    assert r.status_code == 201, r.text
    record = wait_validated(alice, r.json()["id"])
    assert record["status"] == "invalid" and "does not fit swin_micro" in record["error"], record
    junk = files / "junk.safetensors"
    junk.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    r = upload(alice, junk)
    assert wait_validated(alice, r.json()["id"])["status"] == "invalid"


def test_upload_limits_and_bad_requests(rstack, alice, files):
    err = assert_error(upload(alice, files / "big.pt"), 413, "file")
    assert "1 MB" in err["message"]
    leftovers = list((Path(rstack.env["CTTV2_WEIGHTS_DIR"]) / "users").glob("*/.upload-*"))
    assert leftovers == []
    assert_error(upload(alice, files / "micro.safetensors"), 409, "name")  # taken by the first test
    assert_error(upload(alice, files / "micro.pt", name="../../etc/x.pt"), 422, "name")
    assert_error(upload(alice, files / "micro.pt", name="weights.bin"), 422, "name")
    assert_error(upload(alice, files / "micro.pt", name="ok.pt", arch="resnet9000"), 422, "arch")
    assert_error(upload(alice, files / "micro.pt", name="ok.pt", img_size="33"), 422, "img_size")
    assert_error(upload(alice, files / "micro.pt", name="ok.pt", colour="blue"), 422, "colour")
    assert_error(alice.post("/v1/weights", json={"arch": "swin_micro"}), 422, "body")
    no_file = {"arch": (None, "swin_micro"), "name": (None, "x.pt")}  # multipart, no file part
    assert_error(alice.post("/v1/weights", files=no_file), 422, "file")
    assert_error(
        alice.post("/v1/jobs", json=spec(TINY_FP, **{"model.pretrained": {"weights": "absent.pt"}})),
        422,
        "model.pretrained.weights",
    )
