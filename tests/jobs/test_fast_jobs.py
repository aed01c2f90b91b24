"""Jobs through the API, in process (no worker): submit stores the validated spec and publishes
one message; validation names the field; idempotency keys; another user's job is a 404;
listing pages newest first; a queued job cancels at once; rerun; the active-jobs limit."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2, TINY_FP, spec

pytestmark = pytest.mark.fast

MISSING = 2_147_483_647  # a valid id no object has


def submit(client, body=TINY_CTTV2, **headers) -> dict:
    r = client.post("/v1/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def new_messages(api, before: list) -> list:
    """Messages published since `before` (a snapshot of api.published())."""
    after = Counter(map(json.dumps, api.published()))
    after.subtract(Counter(map(json.dumps, before)))
    return sorted(json.loads(m) for m, n in after.items() for _ in range(n))


def job_ids(client, **params) -> list[int]:
    r = client.get("/v1/jobs", params=params)
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()["items"]]


# -- submit -------------------------------------------------------------------------------------


def test_submit_stores_the_validated_spec(api):
    alice = api.user()
    job = submit(alice)
    assert job["status"] == "queued" and job["algorithm"] == "c-ttv2" and job["name"] == "tiny-cttv2"
    assert job["attempt"] == 0 and job["cancel_requested"] is False
    assert job["progress"] is None and job["result"] is None and job["error"] is None
    assert job["started_at"] is None and job["finished_at"] is None
    # The stored spec is the validated one: what was sent, with every default filled in.
    assert job["spec"]["device"]["family"] == "SoftBoundsReference" and job["spec"]["device"]["dw_min"] == 0.01
    assert job["spec"]["device"]["sp_skew"] == 0.0  # a default the request did not give
    assert job["spec"]["training"]["epochs"] == 2 and job["spec"]["data"]["classes"] == [0, 1, 2]
    assert alice.get(f"/v1/jobs/{job['id']}").json() == job

    rows = api.sql("SELECT user_id, status, algorithm, enqueued_at FROM jobs WHERE id = :id", id=job["id"])
    assert len(rows) == 1
    user_id, status, algorithm, enqueued_at = rows[0]
    assert (user_id, status, algorithm) == (alice.user_id, "queued", "c-ttv2")
    assert enqueued_at is not None  # stamped once the message was published


def test_submit_publishes_one_message_naming_the_job(api):
    alice = api.user()
    before = api.published()
    job = submit(alice)
    assert new_messages(api, before) == [["cttv2.run_job", [job["id"]]]]


@pytest.mark.parametrize(
    ("overrides", "status", "code", "field"),
    [
        ({"bogus": 1}, 422, "validation_error", "bogus"),
        ({"algorithm": "nope"}, 422, "validation_error", "algorithm"),
        ({"device.family": "NoSuchDevice"}, 422, "validation_error", "device.family"),
        ({"device.dw_min": -1}, 422, "validation_error", "device.dw_min"),
        ({"device": {"family": "ConstantStep", "sp_skew": 0.1}}, 422, "validation_error", "device"),
        ({"model.arch": "nope"}, 422, "validation_error", "model.arch"),
        ({"model.img_size": 30}, 422, "validation_error", "model"),
        ({"data.classes": [0, 99]}, 422, "validation_error", "data.classes"),
        ({"training.epochs": 0}, 422, "validation_error", "training.epochs"),
        ({"training.epochs": 1001}, 422, "limit_exceeded", "training.epochs"),
        ({"model.img_size": 1024}, 422, "limit_exceeded", "model.img_size"),
        ({"data.train_per_class": 100_000}, 422, "limit_exceeded", "data.train_per_class"),
        ({"name": "x" * 201}, 422, "validation_error", "name"),
        ({"algorithm": "sgd", "device.transfer_noise": 0.1}, 422, "validation_error", None),
    ],
    ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else None,
)
def test_a_bad_spec_is_refused_naming_the_field_and_nothing_is_stored(api, overrides, status, code, field):
    alice = api.user()
    before = api.published()
    assert_error(alice.post("/v1/jobs", json=spec(TINY_CTTV2, **overrides)), status, code, field=field)
    assert api.sql("SELECT count(*) FROM jobs WHERE user_id = :u", u=alice.user_id) == [(0,)]
    assert new_messages(api, before) == []


def test_invalid_json_is_a_422_on_the_body(api):
    r = api.user().post("/v1/jobs", content=b"{nope", headers={"content-type": "application/json"})
    assert_error(r, 422, "validation_error", field="body")


def test_a_nul_character_is_stored_faithfully_or_refused(api):
    """PostgreSQL cannot store NUL in text: a 422 there, never a 500. SQLite stores it: the
    job must then read back exactly as sent."""
    alice = api.user()
    r = alice.post("/v1/jobs", json=spec(TINY_CTTV2, name="a\x00b"))
    if api.name == "postgres":
        assert_error(r, 422, "validation_error")
        assert api.sql("SELECT count(*) FROM jobs WHERE user_id = :u", u=alice.user_id) == [(0,)]
    else:
        assert r.status_code in (201, 422), r.text
        if r.status_code == 201:
            assert alice.get(f"/v1/jobs/{r.json()['id']}").json()["name"] == "a\x00b"


def test_every_listed_algorithm_and_model_is_accepted(api):
    """GET /v1/presets and submit agree: each algorithm and architecture it lists is a job
    the API accepts (and stores under that name)."""
    alice = api.user()
    listing = alice.get("/v1/presets").json()
    for algorithm in listing["algorithms"]:
        assert submit(alice, spec(TINY_CTTV2, algorithm=algorithm))["algorithm"] == algorithm
    for model in listing["models"]:
        job = submit(alice, spec(TINY_CTTV2, **{"model.arch": model["name"]}))
        assert job["spec"]["model"]["arch"] == model["name"]


# -- references to other objects ----------------------------------------------------------------


def test_references_to_another_users_job_look_missing(api):
    alice, bob = api.user(), api.user()
    theirs = submit(bob)["id"]
    for field, body in (
        ("model.pretrained.job", spec(TINY_CTTV2, **{"model.pretrained": {"job": theirs}})),
        ("resume_from.job", spec(TINY_CTTV2, resume_from={"job": theirs})),
    ):
        err_theirs = assert_error(alice.post("/v1/jobs", json=body), 422, "validation_error", field=field)
        missing = json.loads(json.dumps(body).replace(f'"job": {theirs}', f'"job": {MISSING}'))
        err_missing = assert_error(alice.post("/v1/jobs", json=missing), 422, "validation_error", field=field)
        assert err_theirs["message"].replace(str(theirs), "N") == err_missing["message"].replace(str(MISSING), "N")


def test_pretrained_job_must_have_succeeded(api):
    alice = api.user()
    queued = submit(alice, TINY_FP)["id"]
    r = alice.post("/v1/jobs", json=spec(TINY_CTTV2, **{"model.pretrained": {"job": queued}}))
    assert_error(r, 422, "validation_error", field="model.pretrained.job")


def test_resume_needs_a_checkpoint(api):
    alice = api.user()
    queued = submit(alice)["id"]
    r = alice.post("/v1/jobs", json=spec(TINY_CTTV2, resume_from={"job": queued}))
    assert_error(r, 422, "validation_error", field="resume_from.checkpoint")


# -- idempotency --------------------------------------------------------------------------------


def test_same_key_and_body_replays_the_job(api):
    alice = api.user()
    before = api.published()
    r1 = alice.post("/v1/jobs", json=TINY_CTTV2, headers={"Idempotency-Key": "k-1"})
    r2 = alice.post("/v1/jobs", json=TINY_CTTV2, headers={"Idempotency-Key": "k-1"})
    assert r1.status_code == r2.status_code == 201, (r1.text, r2.text)
    assert "idempotent-replayed" not in r1.headers
    assert r2.headers["idempotent-replayed"] == "true"
    assert r2.json()["id"] == r1.json()["id"]
    assert job_ids(alice) == [r1.json()["id"]]
    assert new_messages(api, before) == [["cttv2.run_job", [r1.json()["id"]]]]


def test_same_key_with_another_body_is_a_conflict(api):
    alice = api.user()
    first = submit(alice, TINY_CTTV2, **{"Idempotency-Key": "k-2"})
    r = alice.post("/v1/jobs", json=spec(TINY_CTTV2, **{"training.epochs": 3}), headers={"Idempotency-Key": "k-2"})
    assert_error(r, 409, "idempotency_key_reused")
    assert job_ids(alice) == [first["id"]]


def test_keys_belong_to_their_user(api):
    alice, bob = api.user(), api.user()
    a = submit(alice, TINY_CTTV2, **{"Idempotency-Key": "shared-key"})
    b = submit(bob, TINY_CTTV2, **{"Idempotency-Key": "shared-key"})
    assert a["id"] != b["id"]
    assert job_ids(bob) == [b["id"]]


def test_an_empty_key_is_refused(api):
    alice = api.user()
    assert_error(alice.post("/v1/jobs", json=TINY_CTTV2, headers={"Idempotency-Key": ""}), 422, "validation_error")
    assert job_ids(alice) == []


# -- ownership ----------------------------------------------------------------------------------


def test_another_users_job_is_a_404_like_a_missing_one(api):
    alice, bob = api.user(), api.user()
    job = submit(alice)["id"]
    for method, suffix in (
        ("GET", ""),
        ("POST", "/cancel"),
        ("POST", "/rerun"),
        ("GET", "/metrics"),
        ("GET", "/logs"),
        ("GET", "/events"),
        ("GET", "/artifacts"),
    ):
        theirs = assert_error(bob.request(method, f"/v1/jobs/{job}{suffix}"), 404, "not_found")
        missing = assert_error(bob.request(method, f"/v1/jobs/{MISSING}{suffix}"), 404, "not_found")
        assert theirs["message"].replace(str(job), "N") == missing["message"].replace(str(MISSING), "N"), suffix
    assert job_ids(bob) == []
    # Bob's cancel and rerun did nothing to Alice's job.
    assert api.sql("SELECT status, cancel_requested FROM jobs WHERE id = :id", id=job) == [("queued", False)]
    assert api.sql("SELECT count(*) FROM jobs WHERE rerun_of = :id", id=job) == [(0,)]


@pytest.mark.parametrize("bad", ["0", "2147483648", "abc"])
def test_ids_out_of_range_are_a_422(api, bad):
    assert_error(api.user().get(f"/v1/jobs/{bad}"), 422, "validation_error", field="job_id")


# -- listing ------------------------------------------------------------------------------------


def test_listing_pages_newest_first(api):
    alice = api.user()
    ids = [submit(alice, spec(TINY_CTTV2, name=f"j{i}"))["id"] for i in range(5)]
    assert job_ids(alice) == ids[::-1]

    seen, cursor, pages = [], None, 0
    while True:
        r = alice.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [j["id"] for j in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == 2
    assert seen == ids[::-1] and pages == 3


def test_listing_filters_by_status(api):
    alice = api.user()
    ids = [submit(alice)["id"] for _ in range(3)]
    assert alice.post(f"/v1/jobs/{ids[1]}/cancel").status_code == 200
    assert job_ids(alice, status="cancelled") == [ids[1]]
    assert job_ids(alice, status="queued") == [ids[2], ids[0]]
    assert job_ids(alice, status="running") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"limit": 0}, "limit"),
        ({"cursor": "zz"}, "cursor"),
        ({"cursor": "!!!"}, "cursor"),
    ],
)
def test_bad_list_parameters_are_a_422(api, params, field):
    assert_error(api.user().get("/v1/jobs", params=params), 422, "validation_error", field=field)


def test_page_size_is_capped_by_the_server(api):
    alice = api.user()
    for _ in range(4):
        submit(alice)
    with api.settings(page_size_max=3, page_size_default=2):
        assert len(job_ids(alice)) == 2
        page = alice.get("/v1/jobs", params={"limit": 100}).json()
        assert len(page["items"]) == 3 and page["next_cursor"] is not None


# -- cancel, logs, metrics, events ----------------------------------------------------------------


def test_cancel_a_queued_job(api):
    alice = api.user()
    job = submit(alice)
    r = alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "cancelled" and cancelled["cancel_requested"] is True
    assert cancelled["finished_at"] is not None
    assert alice.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"

    again = alice.post(f"/v1/jobs/{job['id']}/cancel")  # idempotent: stays cancelled, same end time
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled" and again.json()["finished_at"] == cancelled["finished_at"]
    kinds = api.sql("SELECT kind, data FROM job_events WHERE job_id = :id ORDER BY id", id=job["id"])
    statuses = [(d if isinstance(d, dict) else json.loads(d))["status"] for k, d in kinds if k == "status"]
    assert statuses == ["queued", "cancelled"]


def test_a_cancelled_job_has_no_logs_or_metrics_and_its_events_end(api):
    alice = api.user()
    job = submit(alice)["id"]
    assert alice.get(f"/v1/jobs/{job}/logs").json() == {"lines": [], "next_offset": 0, "done": False}
    alice.post(f"/v1/jobs/{job}/cancel")
    assert alice.get(f"/v1/jobs/{job}/logs").json() == {"lines": [], "next_offset": 0, "done": True}
    assert alice.get(f"/v1/jobs/{job}/metrics").json() == {"items": []}

    r = alice.get(f"/v1/jobs/{job}/events")  # the stream ends after the terminal status
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [block for block in r.text.split("\n\n") if block.startswith("id:")]
    data = [
        json.loads(line.removeprefix("data: ")) for e in events for line in e.splitlines() if line.startswith("data: ")
    ]
    assert data == [{"status": "queued"}, {"status": "cancelled"}]
    last_id = events[0].splitlines()[0].removeprefix("id: ")
    resumed = alice.get(f"/v1/jobs/{job}/events", headers={"Last-Event-ID": last_id})
    assert '"status":"cancelled"' in resumed.text and '"status":"queued"' not in resumed.text


def test_metric_keys_are_checked(api):
    alice = api.user()
    job = submit(alice)["id"]
    assert_error(
        alice.get(f"/v1/jobs/{job}/metrics", params={"keys": "bad key!"}), 422, "validation_error", field="keys"
    )
    assert alice.get(f"/v1/jobs/{job}/metrics", params={"keys": "train_loss,test_accuracy"}).json() == {"items": []}


# -- rerun, limits --------------------------------------------------------------------------------


def test_rerun_makes_a_new_job_with_the_same_spec(api):
    alice = api.user()
    first = submit(alice)
    alice.post(f"/v1/jobs/{first['id']}/cancel")
    r = alice.post(f"/v1/jobs/{first['id']}/rerun", headers={"Idempotency-Key": "rerun-1"})
    assert r.status_code == 201, r.text
    again = r.json()
    assert again["id"] != first["id"] and again["rerun_of"] == first["id"]
    assert again["status"] == "queued" and again["spec"] == first["spec"]
    replay = alice.post(f"/v1/jobs/{first['id']}/rerun", headers={"Idempotency-Key": "rerun-1"})
    assert replay.status_code == 201 and replay.json()["id"] == again["id"]
    assert replay.headers["idempotent-replayed"] == "true"
    assert job_ids(alice) == [again["id"], first["id"]]


def test_too_many_active_jobs_is_a_429_until_one_ends(api):
    alice = api.user()
    with api.settings(max_active_jobs_per_user=2):
        first = submit(alice, TINY_CTTV2, **{"Idempotency-Key": "a"})
        submit(alice)
        r = alice.post("/v1/jobs", json=TINY_CTTV2)
        assert_error(r, 429, "too_many_active_jobs")
        assert int(r.headers["retry-after"]) > 0
        # An idempotent replay is still answered at the limit.
        replay = alice.post("/v1/jobs", json=TINY_CTTV2, headers={"Idempotency-Key": "a"})
        assert replay.status_code == 201 and replay.json()["id"] == first["id"]
        alice.post(f"/v1/jobs/{first['id']}/cancel")
        submit(alice)
        assert len(job_ids(alice)) == 3
    # Another user is not limited by Alice's jobs.
    submit(api.user())


def test_the_sdk_raises_a_quota_refusal_at_once(api):
    """A 429 that is a quota (too many active jobs) does not pass by waiting a few seconds:
    the SDK raises it with the server's message instead of retrying for minutes."""
    from cttv2_client import Client
    from cttv2_client.errors import RateLimited

    alice = api.user()
    with (
        api.settings(max_active_jobs_per_user=1),
        Client("http://testserver", alice.token, http_client=api.client(alice.token)) as client,
    ):
        sleeps: list[float] = []
        client._transport.sleep = sleeps.append  # a retry would sleep first
        client.jobs.submit(TINY_FP)
        with pytest.raises(RateLimited, match="at most 1 at a time") as info:
            client.jobs.submit(TINY_FP)
        assert info.value.code == "too_many_active_jobs" and sleeps == []
