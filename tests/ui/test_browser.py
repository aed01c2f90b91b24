"""The dashboard (/ui) in a real browser, against a live stack on PostgreSQL + Redis.

Signing in and out, a job page that follows its job live (status, progress, curves) without
reloading, cancelling from the page, a sweep page, downloading an artifact, another user's job,
names that carry markup, CSRF on every form, and the security headers. Each test saves
screenshots (conftest.shoot) and fails if a page logged a console error (conftest.ui).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser

import httpx
import pytest

from tests.support.specs import TINY_CTTV2, TINY_FP, spec
from tests.support.stack import wait_for_job
from tests.ui.conftest import PAGE_SIZE

pytestmark = [pytest.mark.ui, pytest.mark.postgres, pytest.mark.redis]

XSS = "<script>alert(1)</script>"
LIVE_EPOCHS = 6
# Long enough to cancel while it runs (a few seconds an epoch on a 2-core CPU).
SLOW_FP = spec(TINY_FP, **{"name": "ui-slow", "training.epochs": 40, "data.train_per_class": 100})
ERROR_PAGE = r"the server responded with a status of {}"
TERMINAL = ("succeeded", "failed", "cancelled")


# -- helpers -------------------------------------------------------------------------------------
def submit(user, body: dict) -> int:
    r = user.api.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def finish(user, job_id: int, stack) -> dict:
    """Cancel a job the test no longer needs and wait until it is done (the one worker is free)."""
    user.api.post(f"/v1/jobs/{job_id}/cancel")
    return wait_for_job(user.api, job_id, timeout=120, stack=stack)


def status_of(page) -> str | None:
    return page.get_attribute("#job-status", "data-status")


def wait_status(page, status: str, timeout_s: float) -> None:
    page.wait_for_function(
        "s => document.querySelector('#job-status')?.getAttribute('data-status') === s",
        arg=status,
        timeout=timeout_s * 1000,
    )


def cell_texts(page, selector: str) -> list[str]:
    return [t.strip().lower() for t in page.locator(selector).all_text_contents()]


class Forms(HTMLParser):
    """The forms of a page: id -> {"method", "action", "inputs": {name: value}}."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: dict[str, dict] = {}
        self._current: dict | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._current = {"method": (a.get("method") or "get").lower(), "action": a.get("action"), "inputs": {}}
            self.forms[a.get("id") or f"form{len(self.forms)}"] = self._current
        elif tag in ("input", "button") and self._current is not None and a.get("name"):
            self._current["inputs"][a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


@contextmanager
def http_session(stack, token: str) -> Iterator[httpx.Client]:
    """An httpx client signed in to the dashboard the way the login form does it."""
    with httpx.Client(base_url=stack.url, timeout=30, follow_redirects=False) as client:
        r = client.post("/ui/login", data={"token": token})
        assert r.status_code == 303, (r.status_code, r.text[:500])
        assert client.cookies.get("cttv2_session"), r.headers
        yield client


@pytest.fixture(scope="module")
def done_job(ui_stack, alice) -> dict:
    """A small job of alice's that succeeded (artifacts, curves, a finished page)."""
    job_id = submit(alice, spec(TINY_FP, **{"name": "ui-done", "training.epochs": 2}))
    job = wait_for_job(alice.api, job_id, timeout=180, stack=ui_stack)
    assert job["status"] == "succeeded", job
    return job


# -- 1. signing in and out -----------------------------------------------------------------------
def test_sign_in_wrong_token_then_right_token_then_sign_out(ui, ui_stack, alice, shoot):
    page = ui.page()
    ui.allow_console(page, ERROR_PAGE.format(401))  # the wrong token's page answers 401
    r = page.goto("/ui/login")
    assert r.status == 200
    assert page.get_attribute("form#login input[name=token]", "type") == "password"
    shoot(page, "login.png")

    page.fill("form#login input[name=token]", "cttv2_" + "x" * 40)
    with page.expect_response(lambda r: r.request.method == "POST" and "/ui/login" in r.url) as posted:
        page.click("form#login button[type=submit]")
    assert posted.value.status == 401
    page.wait_for_load_state()
    assert page.locator("#login-error").is_visible()
    assert page.text_content("#login-error").strip()
    assert not [c for c in page.context.cookies() if c["name"] == "cttv2_session"]

    page.fill("form#login input[name=token]", alice.token)
    with page.expect_response(lambda r: r.request.method == "POST" and "/ui/login" in r.url) as posted:
        page.click("form#login button[type=submit]")
    assert posted.value.status == 303
    page.wait_for_url("**/ui/jobs")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "cttv2_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert alice.token not in cookie["value"]  # a session id, not the token

    signout = page.locator("nav form#signout")
    assert (signout.get_attribute("method") or "").lower() == "post"
    assert signout.locator("input[type=hidden][name=csrf]").count() == 1
    with page.expect_navigation():
        signout.locator("button").click()
    page.goto("/ui/jobs")
    assert "/ui/login" in page.url, page.url


# -- 2. a job page follows its job live ----------------------------------------------------------
WATCH = """() => {
    window.__marker = 1;
    const seen = window.__seen = {status: [], points: [], pairs: []};
    const read = () => {
        const s = document.querySelector('#job-status');
        const c = document.querySelector('svg#curves');
        const st = s ? s.getAttribute('data-status') : null;
        const pt = c && c.hasAttribute('data-points') ? Number(c.getAttribute('data-points')) : null;
        if (st !== null && seen.status[seen.status.length - 1] !== st) seen.status.push(st);
        if (pt !== null && seen.points[seen.points.length - 1] !== pt) seen.points.push(pt);
        const last = seen.pairs[seen.pairs.length - 1];
        if (!last || last[0] !== st || last[1] !== pt) seen.pairs.push([st, pt]);
    };
    read();
    new MutationObserver(read).observe(document.documentElement, {
        subtree: true, childList: true, attributes: true, attributeFilter: ['data-status', 'data-points'],
    });
    setInterval(read, 50);
}"""


def test_job_page_follows_the_job_live(ui, ui_stack, alice, shoot):
    # A job ahead of it keeps the watched job queued while the page opens.
    blocker = submit(alice, spec(TINY_FP, **{"name": "ui-blocker", "training.epochs": 4}))
    job_id = submit(alice, spec(TINY_FP, **{"name": "ui-live", "training.epochs": LIVE_EPOCHS}))
    page = ui.page(alice.token)
    r = page.goto(f"/ui/jobs/{job_id}")
    assert r.status == 200
    page.evaluate(WATCH)
    assert page.locator("progress#job-progress").count() == 1

    wait_status(page, "succeeded", timeout_s=240)
    page.wait_for_function(
        "n => document.querySelector('svg#curves')?.getAttribute('data-points') === String(n)",
        arg=LIVE_EPOCHS,
        timeout=20_000,
    )
    seen = page.evaluate("window.__seen")
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    assert seen["status"] == ["queued", "running", "succeeded"], seen
    points = seen["points"]
    assert points == sorted(points) and points[-1] == LIVE_EPOCHS, seen
    assert len([p for p in points if 0 < p < LIVE_EPOCHS]) >= 1, f"the curve did not grow epoch by epoch: {seen}"
    assert page.locator("svg#curves circle.point").count() >= LIVE_EPOCHS
    assert wait_for_job(alice.api, job_id, timeout=10)["status"] == "succeeded"
    assert wait_for_job(alice.api, blocker, timeout=10)["status"] == "succeeded"

    # The finished page, freshly loaded.
    page.reload()
    assert status_of(page) == "succeeded"
    assert page.get_attribute("svg#curves", "data-points") == str(LIVE_EPOCHS)
    assert "swin_micro" in page.text_content("pre#spec-yaml")
    assert page.locator("#environment").count() == 1
    assert page.text_content("pre#log").strip()
    assert page.locator("table#artifacts tr[data-artifact]").count() >= 1
    assert page.locator("form#cancel-form").count() == 0
    assert page.locator("form#rerun-form button").count() == 1
    assert page.locator("form#resume-form").count() == 0
    assert page.locator("#job-error").count() == 0
    shoot(page, "job.png")


def test_failed_job_page_shows_the_error(ui, ui_stack, alice):
    body = spec(TINY_FP, name="ui-fails", data={"dataset": "imagefolder", "name": "no-such-folder"})
    job_id = submit(alice, body)
    page = ui.page(alice.token)
    page.goto(f"/ui/jobs/{job_id}")
    page.evaluate("() => { window.__marker = 1; }")
    wait_status(page, "failed", timeout_s=120)
    job = wait_for_job(alice.api, job_id, timeout=30, stack=ui_stack)
    assert job["status"] == "failed" and job["error"]["message"], job
    page.wait_for_selector("#job-error", timeout=15_000)  # swapped in live
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    assert job["error"]["message"] in page.text_content("#job-error")

    page.reload()
    assert status_of(page) == "failed"
    assert job["error"]["message"] in page.text_content("#job-error")
    assert page.locator("form#cancel-form").count() == 0
    assert page.locator("form#resume-form").count() == 0  # no checkpoint to resume from
    assert page.locator("form#rerun-form button").count() == 1


# -- 3. cancelling from the page -----------------------------------------------------------------
def test_cancel_a_running_job_from_its_page(ui, ui_stack, alice):
    job_id = submit(alice, SLOW_FP)
    page = ui.page(alice.token)
    page.goto(f"/ui/jobs/{job_id}")
    wait_status(page, "running", timeout_s=120)
    # Let it write a checkpoint first, so the cancelled job can be resumed.
    deadline = time.monotonic() + 120
    while not any(a["kind"] == "checkpoint" for a in alice.api.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]):
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.5)
    assert page.locator("form#cancel-form button").count() == 1
    with page.expect_navigation():
        page.click("form#cancel-form button")
    assert page.url.split("?")[0].endswith(f"/ui/jobs/{job_id}"), page.url
    wait_status(page, "cancelled", timeout_s=90)
    assert wait_for_job(alice.api, job_id, timeout=30, stack=ui_stack)["status"] == "cancelled"

    page.reload()
    assert status_of(page) == "cancelled"
    assert page.locator("form#cancel-form").count() == 0
    assert page.locator("form#rerun-form button").count() == 1
    assert page.locator("form#resume-form button").count() == 1

    # "Resume from this": a new job that starts from the cancelled one's latest checkpoint.
    with page.expect_navigation():
        page.click("form#resume-form button")
    resumed_id = int(page.url.split("?")[0].rstrip("/").rsplit("/", 1)[1])
    assert resumed_id != job_id
    resumed = alice.api.get(f"/v1/jobs/{resumed_id}").json()
    assert resumed["resume_from"] == {"job": job_id, "checkpoint": "latest"}, resumed
    alice.api.post(f"/v1/jobs/{resumed_id}/cancel")  # the worker is needed by the next tests
    wait_for_job(alice.api, resumed_id, timeout=90, stack=ui_stack)


# -- 4. a sweep page -----------------------------------------------------------------------------
SWEEP_DONE = """() => {
    const cells = [...document.querySelectorAll('table#sweep-cells td.status')];
    const report = document.querySelectorAll('table#report tbody tr:has(td)');
    return cells.length === 2 && cells.every(td => td.textContent.trim().toLowerCase() === 'succeeded')
        && report.length >= 1;
}"""


def test_sweep_page_shows_table_and_figure(ui, ui_stack, alice, shoot):
    body = {"name": "ui-sweep", "base": TINY_CTTV2, "grid": {"device.sp_skew": [0, 0.1]}, "seeds": [0]}
    r = alice.api.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    page = ui.page(alice.token)

    page.goto("/ui/sweeps")
    assert page.locator(f'table#sweeps tr[data-sweep-id="{sweep_id}"]').count() == 1

    r = page.goto(f"/ui/sweeps/{sweep_id}")
    assert r.status == 200
    page.evaluate("() => { window.__marker = 1; }")
    assert page.locator("table#sweep-cells tbody tr:has(td.status)").count() == 2
    at_open = cell_texts(page, "table#sweep-cells td.status")
    assert at_open != ["succeeded", "succeeded"], "the sweep ended before its page opened: nothing to follow"
    page.wait_for_function(SWEEP_DONE, timeout=300_000)
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    page.wait_for_function(
        "() => document.querySelectorAll('svg#sweep-figure circle.point').length >= 2", timeout=20_000
    )
    marks = page.locator("svg#sweep-figure circle.point")
    for i in range(marks.count()):
        title = marks.nth(i).locator("title").text_content() or ""
        assert re.search(r"\d", title), f"point {i} has no numbers in its <title>: {title!r}"
    assert page.locator("svg#sweep-figure rect.cell").count() == 0  # one knob: lines, not a heatmap
    sweep = alice.api.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["status"] == "succeeded", sweep
    shoot(page, "sweep.png")


def test_two_knob_sweep_draws_a_heatmap_with_the_baseline(ui, ui_stack, alice, shoot):
    """Two knobs: a heatmap cell per grid point, with its numbers and the difference to the
    digital baseline on hover, linking to the cell's jobs; a sweep job's page draws the
    baseline's curve beside its own."""
    grid = {"device.sp_skew": [0, 0.2], "device.sp_variability": [0, 0.1]}
    body = {"name": "ui-heatmap", "base": TINY_CTTV2, "grid": grid, "seeds": [0], "baseline": True}
    r = alice.api.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    page = ui.page(alice.token)
    page.goto(f"/ui/sweeps/{sweep_id}")
    done = """() => [...document.querySelectorAll('table#sweep-cells td.status')]
        .every(td => td.textContent.trim() === 'succeeded')
        && document.querySelectorAll('table#sweep-cells td.status').length === 5"""
    page.wait_for_function(done, timeout=300_000)
    page.wait_for_function(
        "() => document.querySelectorAll('svg#sweep-figure rect.cell:not(.empty)').length === 4", timeout=20_000
    )
    cells = page.locator("svg#sweep-figure rect.cell")
    for i in range(cells.count()):
        title = cells.nth(i).locator("title").text_content() or ""
        assert "test accuracy" in title and "vs digital" in title and re.search(r"\d", title), title
    report_rows = page.locator("table#report tbody tr")
    assert report_rows.count() == 4
    assert all(t.strip() for t in report_rows.locator("td:nth-child(4)").all_text_contents())  # delta column
    shoot(page, "sweep-heatmap.png")

    cells.first.click()  # a cell links to its row of jobs
    anchor = page.evaluate("location.hash")
    assert anchor.startswith("#cell-"), anchor
    job_link = page.locator(f"tr{anchor} a[href^='/ui/jobs/']").first
    job_id = int(job_link.get_attribute("href").rsplit("/", 1)[1])
    page.goto(f"/ui/jobs/{job_id}")
    page.wait_for_function("() => document.querySelectorAll('svg#curves circle.point.baseline').length > 0")
    assert "digital baseline" in (page.locator("#curves-legend").text_content() or "")


# -- 5. downloading an artifact ------------------------------------------------------------------
def test_download_an_artifact_from_the_page(ui, ui_stack, alice, done_job, tmp_path):
    job_id = done_job["id"]
    listed = {a["name"]: a for a in alice.api.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}
    assert listed
    page = ui.page(alice.token)
    page.goto(f"/ui/jobs/{job_id}")
    rows = page.locator("table#artifacts tr[data-artifact]")
    assert sorted(rows.nth(i).get_attribute("data-artifact") for i in range(rows.count())) == sorted(listed)

    for name, art in listed.items():
        row = page.locator(f'table#artifacts tr[data-artifact="{name}"]')
        assert row.locator("td.sha256").text_content().strip() == art["sha256"], name
        href = row.locator("a.download").get_attribute("href")
        assert href, name
        got = page.context.request.get(href)  # the page's cookies
        assert got.status == 200, (name, href, got.status)
        assert hashlib.sha256(got.body()).hexdigest() == art["sha256"], name
        # The link is for the signed-in browser only.
        anon = httpx.get(ui_stack.url + href if href.startswith("/") else href, timeout=30)
        assert anon.status_code != 200, (name, href)

    smallest = min(listed.values(), key=lambda a: a["size"])
    with page.expect_download() as dl:
        page.locator(f'table#artifacts tr[data-artifact="{smallest["name"]}"] a.download').click()
    saved = tmp_path / "download"
    dl.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == smallest["sha256"]


# -- 6. another user's job, markup in names ------------------------------------------------------
def test_another_users_job_is_not_found(ui, ui_stack, alice, bob, done_job):
    bobs = submit(bob, spec(TINY_FP, **{"name": "bobs-job", "training.epochs": 1}))
    try:
        page = ui.page(alice.token)
        ui.allow_console(page, ERROR_PAGE.format(404))
        for job_id in (bobs, 2_000_000_000):
            r = page.goto(f"/ui/jobs/{job_id}")
            assert r.status == 404, job_id
            assert page.text_content("h1").strip() == "Not found"
            assert "bobs-job" not in page.content()
        # Bob sees his own.
        page = ui.page(bob.token)
        assert page.goto(f"/ui/jobs/{bobs}").status == 200
        # And not alice's.
        ui.allow_console(page, ERROR_PAGE.format(404))
        assert page.goto(f"/ui/jobs/{done_job['id']}").status == 404
    finally:
        finish(bob, bobs, ui_stack)


def test_markup_in_a_job_name_renders_as_text(ui, ui_stack, alice):
    job_id = submit(alice, spec(TINY_FP, **{"name": XSS, "training.epochs": 1}))
    try:
        page = ui.page(alice.token)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        no_script = "() => [...document.scripts].some(s => s.textContent.includes('alert(1)'))"

        page.goto("/ui/jobs")
        row = page.locator(f'table#jobs tbody tr[data-job-id="{job_id}"]')
        assert XSS in row.text_content()
        assert page.evaluate(no_script) is False

        page.goto(f"/ui/jobs/{job_id}")
        assert XSS in page.text_content("body")
        assert page.evaluate(no_script) is False
        page.wait_for_timeout(500)
        assert dialogs == []
    finally:
        finish(alice, job_id, ui_stack)


# -- the jobs list -------------------------------------------------------------------------------
def test_jobs_list_pages(ui, ui_stack, alice, done_job, shoot):
    listed = alice.api.get("/v1/jobs", params={"limit": 100}).json()["items"]
    assert len(listed) > PAGE_SIZE, "the tests before this one submit more jobs than a page holds"
    page = ui.page(alice.token)
    page.goto("/ui/jobs")
    shoot(page, "jobs.png")
    rows = "table#jobs tbody tr[data-job-id]"
    first = [r.get_attribute("data-job-id") for r in page.locator(rows).all()]
    assert first == [str(j["id"]) for j in listed[:PAGE_SIZE]], first  # newest first
    with page.expect_navigation():
        page.click("a#next-page")
    second = [r.get_attribute("data-job-id") for r in page.locator(rows).all()]
    assert second == [str(j["id"]) for j in listed[PAGE_SIZE : 2 * PAGE_SIZE]], second
    if len(listed) <= 2 * PAGE_SIZE:
        assert page.locator("a#next-page").count() == 0


def test_jobs_list_links_and_filters(ui, ui_stack, alice, done_job):
    job_id = done_job["id"]
    page = ui.page(alice.token)
    page.goto("/ui/jobs?name=ui-done")
    row = page.locator(f'table#jobs tbody tr[data-job-id="{job_id}"]')
    assert row.locator("td.status").text_content().strip().lower() == "succeeded"
    link = row.locator("a.job-link")
    assert (link.get_attribute("href") or "").split("?")[0].endswith(f"/ui/jobs/{job_id}")

    form = page.locator("form#job-filters")
    assert (form.get_attribute("method") or "get").lower() == "get"
    form.locator("select[name=status]").select_option("succeeded")
    with page.expect_navigation():
        form.locator("select[name=status]").evaluate("s => s.form.requestSubmit()")
    assert "status=succeeded" in page.url
    statuses = cell_texts(page, "table#jobs tbody tr[data-job-id] td.status")
    assert statuses and set(statuses) == {"succeeded"}, statuses

    page.goto("/ui/jobs")
    page.fill("form#job-filters input[name=name]", "ui-done")
    with page.expect_navigation():
        page.locator("form#job-filters input[name=name]").press("Enter")
    assert "name=ui-done" in page.url
    ids = [r.get_attribute("data-job-id") for r in page.locator("table#jobs tbody tr[data-job-id]").all()]
    assert str(job_id) in ids
    names = [t for t in page.locator("table#jobs tbody tr[data-job-id]").all_text_contents()]
    assert all("ui-done" in t for t in names), names

    with page.expect_navigation():
        page.locator(f'table#jobs tbody tr[data-job-id="{job_id}"] a.job-link').click()
    assert page.url.endswith(f"/ui/jobs/{job_id}")
    assert status_of(page) == "succeeded"


# -- the other pages -----------------------------------------------------------------------------
def test_devices_presets_and_admin_pages(ui, ui_stack, alice, admin, shoot):
    page = ui.page(alice.token)
    assert page.goto("/ui/devices").status == 200
    assert page.locator("nav form#signout").count() == 1
    shoot(page, "devices.png")
    assert page.goto("/ui/presets").status == 200
    assert page.locator("table#presets tbody tr:has(td)").count() >= 1
    # Which knob is which of the paper's non-idealities, and both model families with their sizes.
    assert page.locator("table#nonidealities tbody tr").count() == 12
    assert "device.sp_skew" in page.locator('#nonidealities tr[data-knob="device.sp_skew"]').inner_text()
    assert "resnet" in page.locator('#models tr[data-model="resnet_micro"]').inner_text()
    assert "13 / 17" in page.locator('#models tr[data-model="resnet_micro"]').inner_text()
    shoot(page, "presets.png")
    ui.allow_console(page, ERROR_PAGE.format(r"40[34]"))
    r = page.goto("/ui/admin")
    assert r.status != 200 and page.locator("table#queues").count() == 0

    page = ui.page(admin.token)
    assert page.goto("/ui/admin").status == 200
    assert page.locator("table#queues").count() == 1
    assert page.locator("table#workers tbody tr:has(td)").count() >= 1  # the stack's worker


# -- CSRF and headers ----------------------------------------------------------------------------
def test_state_changing_posts_need_the_csrf_token(ui_stack, alice):
    job_id = submit(alice, spec(TINY_FP, **{"name": "ui-csrf", "training.epochs": 1}))
    try:
        with http_session(ui_stack, alice.token) as client:
            page = client.get(f"/ui/jobs/{job_id}")
            assert page.status_code == 200
            forms = Forms(page.text).forms
            posts = {fid: f for fid, f in forms.items() if f["method"] == "post"}
            assert "signout" in posts and "rerun-form" in posts, sorted(forms)
            before = len(alice.api.get("/v1/jobs", params={"limit": 100}).json()["items"])

            targets = [(fid, f["action"], f["inputs"]) for fid, f in posts.items()]
            targets.append(("cancel", f"/ui/jobs/{job_id}/cancel", {}))
            for fid, action, inputs in targets:
                assert action, fid
                no_csrf = {k: v for k, v in inputs.items() if k != "csrf"}
                for data in (no_csrf, {**no_csrf, "csrf": "wrong"}):
                    r = client.post(action, data=data)
                    assert r.status_code == 403, (fid, action, data, r.status_code)

            # Nothing happened: still signed in, no new job, the job not cancelled.
            assert client.get("/ui/jobs").status_code == 200
            assert len(alice.api.get("/v1/jobs", params={"limit": 100}).json()["items"]) == before
            assert alice.api.get(f"/v1/jobs/{job_id}").json()["cancel_requested"] is False

            # The right token does it.
            csrf = posts["signout"]["inputs"].get("csrf")
            assert csrf
            r = client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf})
            assert r.status_code in (302, 303), (r.status_code, r.text[:300])
            assert r.headers["location"].split("?")[0].endswith(f"/ui/jobs/{job_id}"), r.headers
    finally:
        finish(alice, job_id, ui_stack)


def test_every_page_sends_the_security_headers(ui_stack, alice, admin, done_job):
    with (
        http_session(ui_stack, admin.token) as root,
        http_session(ui_stack, alice.token) as client,
        httpx.Client(base_url=ui_stack.url, timeout=30) as anon,
    ):
        sweeps = alice.api.get("/v1/sweeps").json()["items"]
        pages = [
            (anon, "/ui/login", 200),
            (client, "/ui/jobs", 200),
            (client, f"/ui/jobs/{done_job['id']}", 200),
            (client, "/ui/jobs/2000000000", 404),
            (client, "/ui/sweeps", 200),
            *[(client, f"/ui/sweeps/{s['id']}", 200) for s in sweeps[:1]],
            (client, "/ui/devices", 200),
            (client, "/ui/presets", 200),
            (root, "/ui/admin", 200),
        ]
        for who, path, expected in pages:
            r = who.get(path)
            assert r.status_code == expected, (path, r.status_code)
            csp = r.headers.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in csp, (path, csp)
            assert "script-src 'self'" in csp, (path, csp)
            assert r.headers.get("x-content-type-options") == "nosniff", (path, r.headers)
