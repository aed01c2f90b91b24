"""The JSON columns (specs, results, progress) are decoded with core.db.json_loads on both
backends: the same values as the standard library, including what only it reads (NaN and
Infinity, which SQLite may hold), and a job's spec and result come back through the API as
stored."""

from __future__ import annotations

import json
import math

import pytest

from service.core.db import json_loads, make_engine
from tests.support.specs import TINY_FP, spec

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [1.5, -2e-7, null, true], "c": {"d": "\\u00e9\\ud83d\\ude00"}}',
        '{"seed": 2147483647, "lr": 0.1, "steps": 9007199254740993}',
        "[]",
        '"x"',
    ],
)
def test_json_loads_reads_what_the_standard_library_reads(text):
    assert json_loads(text) == json.loads(text)
    assert json_loads(text.encode()) == json.loads(text)


def test_nan_and_infinity_still_read():
    value = json_loads('{"loss": NaN, "best": Infinity, "worst": -Infinity}')
    assert math.isnan(value["loss"]) and value["best"] == math.inf and value["worst"] == -math.inf


def test_the_engine_decodes_json_columns_with_it(api):
    from service.core.config import get_settings

    assert make_engine(get_settings()).dialect._json_deserializer is json_loads
    alice = api.user()
    body = spec(TINY_FP, name="json é ✓", **{"training.lr": 1e-7})
    job = alice.post("/v1/jobs", json=body).json()
    api.sql(
        "UPDATE jobs SET result = :r WHERE id = :id",
        r=json.dumps({"test_accuracy": 0.875, "per_class": [0.5, 1.0], "steps": 2**53 + 1}),
        id=job["id"],
    )
    read = alice.get(f"/v1/jobs/{job['id']}").json()
    assert read["spec"] == job["spec"] and read["spec"]["name"] == "json é ✓"
    assert read["spec"]["training"]["lr"] == 1e-7
    assert read["result"] == {"test_accuracy": 0.875, "per_class": [0.5, 1.0], "steps": 2**53 + 1}
    assert [j["result"] for j in alice.get("/v1/jobs").json()["items"]] == [read["result"]]
