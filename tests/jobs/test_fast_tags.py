"""Tags and notes of jobs, and the filters of GET /v1/jobs, in process (no worker), on SQLite
and PostgreSQL: tags/notes at submit (not part of the spec, the hash or a key's replay) and
with PATCH; 422s naming the field; another user's job is a 404 and their tags never match;
each filter, their combination and paging through a filtered list; sweeps and reruns; delete."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2, TINY_FP, spec

pytestmark = pytest.mark.fast


def submit(client, body=TINY_FP, **fields) -> dict:
    r = client.post("/v1/jobs", json={**body, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def listed(client, **params) -> list[int]:
    r = client.get("/v1/jobs", params=params)
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()["items"]]


def tag_rows(api, job_id: int) -> set[str]:
    return {t for (t,) in api.sql("SELECT tag FROM job_tags WHERE job_id = :j", j=job_id)}


# -- at submit ----------------------------------------------------------------------------------


def test_tags_and_notes_at_submit_are_shown_and_not_part_of_the_spec(api):
    alice = api.user()
    job = submit(alice, tags=["b", "a:1", "b", "x/y.z_-"], notes="first try\nwith [brackets]")
    assert job["tags"] == ["b", "a:1", "x/y.z_-"]  # duplicates dropped, order kept
    assert job["notes"] == "first try\nwith [brackets]"
    assert "tags" not in job["spec"] and "notes" not in job["spec"]
    assert alice.get(f"/v1/jobs/{job['id']}").json() == job
    assert tag_rows(api, job["id"]) == {"b", "a:1", "x/y.z_-"}
    plain = submit(alice)
    assert plain["tags"] == [] and plain["notes"] is None and tag_rows(api, plain["id"]) == set()
    # The spec (and its hash) is the same with or without them.
    hashes = api.sql("SELECT spec_hash FROM jobs WHERE id IN (:a, :b)", a=job["id"], b=plain["id"])
    assert len({h for (h,) in hashes}) == 1


def test_tags_and_notes_leave_the_idempotency_key_alone(api):
    alice = api.user()
    key = uuid.uuid4().hex
    r = alice.post("/v1/jobs", json=TINY_FP, headers={"Idempotency-Key": key})
    assert r.status_code == 201
    job_id = r.json()["id"]
    # No tags and no notes hash as a body without the fields (as before they existed).
    again = alice.post("/v1/jobs", json={**TINY_FP, "tags": [], "notes": None}, headers={"Idempotency-Key": key})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json()["id"] == job_id
    # Editing the job's tags later does not change what the key replays.
    assert alice.patch(f"/v1/jobs/{job_id}", json={"tags": ["later"]}).status_code == 200
    again = alice.post("/v1/jobs", json=TINY_FP, headers={"Idempotency-Key": key})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json()["tags"] == ["later"]
    # A key with tags replays the same tags, and refuses others.
    key2 = uuid.uuid4().hex
    tagged = alice.post("/v1/jobs", json={**TINY_FP, "tags": ["t"]}, headers={"Idempotency-Key": key2}).json()
    same = alice.post("/v1/jobs", json={**TINY_FP, "tags": ["t"]}, headers={"Idempotency-Key": key2})
    assert same.headers.get("Idempotent-Replayed") == "true" and same.json()["id"] == tagged["id"]
    other = alice.post("/v1/jobs", json={**TINY_FP, "tags": ["u"]}, headers={"Idempotency-Key": key2})
    assert_error(other, 409, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tags": ["ok", "has space"]}, "tags.1"),
        ({"tags": [""]}, "tags.0"),
        ({"tags": ["x" * 65]}, "tags.0"),
        ({"tags": ["é"]}, "tags.0"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": "a,b"}, "tags"),
        ({"notes": "n" * 10_001}, "notes"),
        ({"notes": "a\x00b"}, "notes"),
    ],
)
def test_bad_tags_or_notes_are_a_422_naming_the_field(api, fields, field):
    alice = api.user()
    assert_error(alice.post("/v1/jobs", json={**TINY_FP, **fields}), 422, "validation_error", field=field)
    job = submit(alice)
    assert_error(alice.patch(f"/v1/jobs/{job['id']}", json=fields), 422, "validation_error", field=field)
    assert alice.get(f"/v1/jobs/{job['id']}").json()["tags"] == []


def test_twenty_tags_and_ten_thousand_characters_are_fine(api):
    alice = api.user()
    tags = [f"t{i}" for i in range(20)]
    job = submit(alice, tags=[*tags, "t0"], notes="n" * 10_000)
    assert job["tags"] == tags and len(job["notes"]) == 10_000


# -- PATCH --------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_given(api):
    alice = api.user()
    job = submit(alice, tags=["a", "b"], notes="n")
    r = alice.patch(f"/v1/jobs/{job['id']}", json={"tags": ["c", "a", "c"]})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["c", "a"] and r.json()["notes"] == "n"
    assert tag_rows(api, job["id"]) == {"c", "a"}
    r = alice.patch(f"/v1/jobs/{job['id']}", json={"notes": "better"})
    assert r.json()["tags"] == ["c", "a"] and r.json()["notes"] == "better"
    assert alice.patch(f"/v1/jobs/{job['id']}", json={}).json() == r.json()
    # The run's own fields are untouched (updated_at too: it tracks the run).
    after = alice.get(f"/v1/jobs/{job['id']}").json()
    assert {k: v for k, v in after.items() if k not in ("tags", "notes")} == {
        k: v for k, v in job.items() if k not in ("tags", "notes")
    }
    cleared = alice.patch(f"/v1/jobs/{job['id']}", json={"tags": [], "notes": ""}).json()
    assert cleared["tags"] == [] and cleared["notes"] is None and tag_rows(api, job["id"]) == set()
    assert alice.patch(f"/v1/jobs/{job['id']}", json={"tags": None, "notes": None}).json()["tags"] == []
    assert_error(alice.patch(f"/v1/jobs/{job['id']}", json={"name": "x"}), 422, "validation_error", field="name")


def test_patch_works_in_any_status(api):
    alice = api.user()
    job = submit(alice)
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    r = alice.patch(f"/v1/jobs/{job['id']}", json={"tags": ["done"], "notes": "cancelled on purpose"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["tags"] == ["done"]


def test_another_users_job_is_a_404_and_their_tags_never_match(api):
    alice, bob = api.user(), api.user()
    job = submit(alice, tags=["shared"], notes="mine")
    assert_error(bob.patch(f"/v1/jobs/{job['id']}", json={"tags": ["x"]}), 404, "not_found")
    assert_error(bob.patch("/v1/jobs/2147483647", json={"notes": "x"}), 404, "not_found")
    assert_error(bob.patch(f"/v1/jobs/{job['id']}"), 404, "not_found")  # no body: still a 404
    assert alice.patch(f"/v1/jobs/{job['id']}").json()["notes"] == "mine"  # no body: no change
    assert alice.get(f"/v1/jobs/{job['id']}").json()["tags"] == ["shared"]
    mine = submit(bob, tags=["shared"])
    assert listed(bob, tag="shared") == [mine["id"]]
    assert listed(alice, tag="shared") == [job["id"]]


def test_deleting_a_job_deletes_its_tags(api):
    alice = api.user()
    job = submit(alice, tags=["gone", "too"])
    alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert tag_rows(api, job["id"]) == {"gone", "too"}
    assert alice.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert tag_rows(api, job["id"]) == set()


# -- sweeps and reruns --------------------------------------------------------------------------


def test_a_sweep_gives_its_tags_and_notes_to_every_job(api):
    alice = api.user()
    base = {**TINY_FP, "tags": ["study", "lr"], "notes": "lr scan"}
    sweep = alice.post("/v1/sweeps", json={"name": "s", "base": base, "grid": {"training.lr": [0.001, 0.002]}})
    assert sweep.status_code == 201, sweep.text
    jobs = alice.get(f"/v1/sweeps/{sweep.json()['id']}/jobs").json()["items"]
    assert len(jobs) == 2
    assert all(j["tags"] == ["study", "lr"] and j["notes"] == "lr scan" for j in jobs)
    assert all("tags" not in j["spec"] for j in jobs)
    assert sorted(listed(alice, tag="lr")) == sorted(j["id"] for j in jobs)
    assert_error(
        alice.post("/v1/sweeps", json={"base": {**TINY_FP, "tags": ["a b"]}, "grid": {"training.lr": [0.001]}}),
        422,
        "validation_error",
        field="base.tags.0",
    )


def test_a_rerun_copies_the_tags_not_the_notes(api):
    alice = api.user()
    job = submit(alice, tags=["x", "y"], notes="about this run")
    key = uuid.uuid4().hex
    rerun = alice.post(f"/v1/jobs/{job['id']}/rerun", headers={"Idempotency-Key": key})
    assert rerun.status_code == 201, rerun.text
    assert rerun.json()["tags"] == ["x", "y"] and rerun.json()["notes"] is None
    # The same rerun request replays even after the first job's tags changed.
    alice.patch(f"/v1/jobs/{job['id']}", json={"tags": ["z"]})
    again = alice.post(f"/v1/jobs/{job['id']}/rerun", headers={"Idempotency-Key": key})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json()["id"] == rerun.json()["id"]


# -- the list's filters -------------------------------------------------------------------------


def test_each_filter_and_their_combination(api):
    alice = api.user()
    a = submit(alice, TINY_FP, name="Reram-a", tags=["keep"])
    b = submit(alice, TINY_CTTV2, name="reram-b", tags=["keep", "other"])
    c = submit(alice, TINY_CTTV2, name="reram_c")
    d = submit(alice, TINY_FP, name="re%ram")
    e = submit(alice, spec(TINY_FP, name=None))
    alice.post(f"/v1/jobs/{b['id']}/cancel")
    everything = [e["id"], d["id"], c["id"], b["id"], a["id"]]
    assert listed(alice) == everything

    assert listed(alice, tag="keep") == [b["id"], a["id"]]
    assert listed(alice, tag="other") == [b["id"]] and listed(alice, tag="none") == []
    # name: a case-sensitive prefix; % and _ are plain characters.
    assert listed(alice, name="reram") == [c["id"], b["id"]]
    assert listed(alice, name="Reram") == [a["id"]]
    assert listed(alice, name="reram_") == [c["id"]]
    assert listed(alice, name="re%") == [d["id"]]
    assert listed(alice, name="reram-b") == [b["id"]] and listed(alice, name="reram-bb") == []
    assert listed(alice, algorithm="c-ttv2") == [c["id"], b["id"]]
    assert listed(alice, algorithm="fp") == [e["id"], d["id"], a["id"]]
    assert listed(alice, status="cancelled") == [b["id"]]
    assert listed(alice, tag="keep", algorithm="fp") == [a["id"]]
    assert listed(alice, tag="keep", status="queued", name="Re") == [a["id"]]
    assert listed(alice, tag="keep", status="cancelled", algorithm="fp") == []

    created = {j["id"]: datetime.fromisoformat(j["created_at"]) for j in (a, c)}
    after_c = listed(alice, created_after=created[c["id"]].isoformat())
    assert after_c == [e["id"], d["id"], c["id"]]  # at or after
    assert listed(alice, created_before=created[c["id"]].isoformat()) == [b["id"], a["id"]]  # strictly before
    naive = created[c["id"]].replace(tzinfo=None).isoformat()  # no zone: UTC
    assert listed(alice, created_after=naive) == after_c
    window = {"created_after": created[a["id"]].isoformat(), "created_before": created[c["id"]].isoformat()}
    assert listed(alice, **window) == [b["id"], a["id"]]
    later = (created[a["id"]] + timedelta(days=1)).isoformat()
    assert listed(alice, created_after=later) == []


def test_the_sweep_filter(api):
    alice, bob = api.user(), api.user()
    body = {"name": "s", "base": TINY_FP, "grid": {"training.lr": [0.001, 0.002, 0.003]}}
    sweep = alice.post("/v1/sweeps", json=body).json()
    other = alice.post("/v1/sweeps", json=body).json()
    submit(alice)
    ids = listed(alice, sweep=sweep["id"])
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)
    assert set(ids).isdisjoint(listed(alice, sweep=other["id"]))
    assert listed(bob, sweep=sweep["id"]) == []  # another user's sweep: nothing
    assert listed(alice, sweep=sweep["id"], limit=2, name="zzz") == []


def test_paging_through_a_filtered_list(api):
    alice = api.user()
    tagged = [submit(alice, tags=["page"])["id"] if i % 2 == 0 else submit(alice)["id"] for i in range(9)]
    want = sorted(tagged[::2], reverse=True)  # 5 tagged jobs, newest first
    for params in ({"tag": "page"}, {"tag": "page", "algorithm": "fp", "status": "queued"}):
        seen, cursor = [], None
        while True:
            r = alice.get("/v1/jobs", params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= 2
            seen += [j["id"] for j in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == want, params
    prefix = alice.get("/v1/jobs", params={"name": "tiny-", "limit": 3}).json()
    assert len(prefix["items"]) == 3 and prefix["next_cursor"]
    rest = alice.get("/v1/jobs", params={"name": "tiny-", "limit": 100, "cursor": prefix["next_cursor"]}).json()
    assert [j["id"] for j in prefix["items"] + rest["items"]] == sorted(tagged, reverse=True)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"tag": "has space"}, "tag"),
        ({"tag": "x" * 65}, "tag"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": "a\x00"}, "name"),
        ({"sweep": "abc"}, "sweep"),
        ({"sweep": "0"}, "sweep"),
        ({"algorithm": "adam"}, "algorithm"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-13-01"}, "created_before"),
        ({"created_after": "0001-01-01T00:00:00+01:00"}, "created_after"),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(api, params, field):
    assert_error(api.user().get("/v1/jobs", params=params), 422, "validation_error", field=field)


def test_the_algorithm_filter_takes_every_engine_algorithm(api):
    from cttv2_engine.spec import ALGORITHMS

    alice = api.user()
    for name in ALGORITHMS:
        assert alice.get("/v1/jobs", params={"algorithm": name}).status_code == 200
