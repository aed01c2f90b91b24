"""GET /v1/presets, in process: what a client needs to write a spec (families, presets, knobs
with ranges and defaults, algorithms with their recipes, models, datasets), consistent with
what submit accepts and refuses."""

from __future__ import annotations

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2, spec

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def listing(api) -> dict:
    r = api.user().get("/v1/presets")
    assert r.status_code == 200, r.text
    return r.json()


def test_needs_a_token(api):
    assert_error(api.client().get("/v1/presets"), 401, "unauthorized")


def test_lists_every_part_of_a_spec(listing):
    assert {
        "families",
        "presets",
        "device_knobs",
        "algorithm_options",
        "algorithms",
        "models",
        "datasets",
        "model_fields",
        "data_fields",
        "training_fields",
    } <= set(listing)
    assert {"c-ttv2", "ttv2", "sgd", "fp"} <= set(listing["algorithms"])
    assert {"digits", "cifar10", "cifar100"} <= set(listing["datasets"])
    assert "SoftBoundsReference" in listing["families"] and "ReRamSB" in listing["presets"]
    micro = [m for m in listing["models"] if m["name"] == "swin_micro"]
    assert micro and micro[0]["img_size"] == 32
    models = {m["name"]: m for m in listing["models"]}
    assert {"resnet18", "resnet34", "resnet18_cifar", "resnet34_cifar", "resnet_micro"} <= set(models)
    assert {m["family"] for m in models.values()} == {"swin", "resnet"}
    assert models["resnet18_cifar"]["parameters"] == 11_173_962  # the standard CIFAR ResNet-18
    assert models["swin_micro"]["analog"]["all"] == {"layers": 19, "tiles": 19}


def test_lists_the_papers_non_idealities_as_device_knobs(listing):
    rows = listing["nonidealities"]
    assert len(rows) == 12  # eleven, I/O resolution being two knobs (DAC, ADC)
    for row in rows:
        knob = row["field"].removeprefix("device.")
        assert knob in listing["device_knobs"], row
        assert listing["device_knobs"][knob].get("unit"), row  # unit and range come with the knob
        assert row["aihwkit"] and row["mapping"] and len(row["study_values"]) >= 2, row


def test_each_algorithm_has_a_recipe_and_a_learning_rate(listing):
    for name, algorithm in listing["algorithms"].items():
        assert algorithm["description"], name
        assert isinstance(algorithm["default_lr"], float) and algorithm["default_lr"] > 0, name
        assert isinstance(algorithm["recipe"], dict), name
    assert listing["algorithms"]["fp"]["recipe"] == {}
    assert listing["algorithms"]["c-ttv2"]["recipe"]["in_chop_prob"] > 0
    assert listing["algorithms"]["ttv2"]["recipe"]["in_chop_prob"] == 0  # c-TTv2 without choppers


def test_the_listed_knob_ranges_are_the_ones_enforced(api, listing):
    """Each numeric device knob's listed bounds are accepted, and one step past either bound
    is a 422 naming that knob (stored device specs get the checks every job spec gets)."""
    alice = api.user()
    family = "SoftBoundsReference"
    takes = set(listing["families"][family]["knobs"])
    checked = []
    for knob, info in listing["device_knobs"].items():
        if info.get("type") not in ("number", "integer") or knob not in takes:
            continue
        step = 1 if info["type"] == "integer" else 0.5
        for bound, beyond in (("minimum", -step), ("maximum", step)):
            if bound not in info:
                continue
            ok = alice.post("/v1/device-specs", json={"spec": {"family": family, knob: info[bound]}})
            assert ok.status_code == 201, (knob, bound, ok.text)
            assert ok.json()["spec"][knob] == info[bound]
            bad = alice.post("/v1/device-specs", json={"spec": {"family": family, knob: info[bound] + beyond}})
            assert_error(bad, 422, "validation_error", field=f"spec.{knob}")
            checked.append((knob, bound))
    assert len(checked) >= 20, checked


def test_a_knob_the_family_does_not_take_is_refused(api, listing):
    alice = api.user()
    without = [f for f, info in listing["families"].items() if "sp_skew" not in info["knobs"]]
    assert without
    for family in without:
        r = alice.post("/v1/jobs", json=spec(TINY_CTTV2, device={"family": family, "sp_skew": 0.1}))
        assert_error(r, 422, "validation_error", field="device")
