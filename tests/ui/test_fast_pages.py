"""The dashboard's pages in process (no browser, no worker), on SQLite and PostgreSQL: signing
in and out, sessions that end with their token, CSRF on every state-changing form, isolation
(another user's things are 404 pages), escaping, security headers, filters and paging. The
browser tests (test_browser.py) check what needs a real browser: live updates, charts,
downloads, dialogs."""

from __future__ import annotations

import re

import pytest

from tests.support.specs import TINY_CTTV2, TINY_FP, spec

pytestmark = pytest.mark.fast

XSS = "<script>alert(1)</script>"
PAGES = ["/ui/jobs", "/ui/sweeps", "/ui/devices", "/ui/presets"]


def signed_in(api, user=None):
    """(the user's API client, a browser-like client signed in as them, its CSRF token)."""
    user = user or api.user()
    browser = api.client()
    r = browser.post("/ui/login", data={"token": user.token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = browser.get("/ui/jobs")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text[:2000]
    return user, browser, csrf[1]


def submit(client, body) -> dict:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_sign_in_sets_a_strict_http_only_cookie_and_never_shows_the_token(api):
    user = api.user()
    browser = api.client()
    r = browser.post("/ui/login", data={"token": user.token, "next": "/ui/presets"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/presets"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("cttv2_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http in this test; https adds Secure
    assert user.token not in cookie and user.token not in r.headers["location"]
    page = browser.get("/ui/jobs")
    assert page.status_code == 200 and user.name in page.text
    assert user.token not in page.text
    # The stored session is a hash, not the cookie's value and not the token.
    session_id = cookie.split(";")[0].split("=", 1)[1]
    stored = [row[0] for row in api.sql("SELECT session_hash FROM ui_sessions")]
    assert session_id not in stored and user.token not in stored


def test_a_wrong_token_shows_an_error_and_sets_no_cookie(api):
    browser = api.client()
    r = browser.post("/ui/login", data={"token": "cttv2_not-a-token"}, follow_redirects=False)
    assert r.status_code == 401
    assert 'id="login-error"' in r.text and "not valid" in r.text
    assert "set-cookie" not in r.headers
    assert "cttv2_not-a-token" not in r.text


def test_pages_need_a_session_and_the_next_url_stays_on_this_site(api):
    browser = api.client()
    for path in [*PAGES, "/ui/jobs/1", "/ui/sweeps/1", "/ui/admin"]:
        r = browser.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next="), path
    user = api.user()
    for evil in ["https://evil.example/", "//evil.example/ui/", "/v1/jobs"]:
        r = browser.post("/ui/login", data={"token": user.token, "next": evil}, follow_redirects=False)
        assert r.headers["location"] == "/ui/jobs", evil


def test_revoking_the_token_ends_the_session_on_the_next_request(api):
    user, browser, _ = signed_in(api)
    assert browser.get("/ui/jobs", follow_redirects=False).status_code == 200
    tokens = api.admin.get(f"/v1/admin/users/{user.user_id}/tokens").json()["items"]
    for token in tokens:
        r = api.admin.post(f"/v1/admin/users/{user.user_id}/tokens/{token['id']}/revoke")
        assert r.status_code == 200, r.text
    r = browser.get("/ui/jobs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    assert api.sql(
        "SELECT count(*) FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id WHERE t.user_id = :u",
        u=user.user_id,
    ) == [(0,)]


def test_sign_out_needs_the_csrf_token_and_ends_the_session(api):
    _, browser, csrf = signed_in(api)
    assert browser.post("/ui/logout", data={}, follow_redirects=False).status_code == 403
    assert browser.post("/ui/logout", data={"csrf": "wrong"}, follow_redirects=False).status_code == 403
    assert browser.get("/ui/jobs", follow_redirects=False).status_code == 200  # still signed in
    r = browser.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert browser.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_cancel_and_rerun_forms_need_the_csrf_token(api):
    user, browser, csrf = signed_in(api)
    job = submit(user, TINY_CTTV2)
    for action in ("cancel", "rerun", "resume"):
        r = browser.post(f"/ui/jobs/{job['id']}/{action}", data={"csrf": "x" * 43}, follow_redirects=False)
        assert r.status_code == 403 and "did not come from this site" in r.text, action
    assert user.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    r = browser.post(f"/ui/jobs/{job['id']}/cancel", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/ui/jobs/{job['id']}"
    assert user.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    r = browser.post(f"/ui/jobs/{job['id']}/rerun", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    new_id = int(r.headers["location"].rsplit("/", 1)[1])
    assert user.get(f"/v1/jobs/{new_id}").json()["rerun_of"] == job["id"]
    # No checkpoint: "resume from this" is not offered, and posting it anyway is a clear 4xx page.
    page = browser.get(f"/ui/jobs/{job['id']}")
    assert 'id="resume-form"' not in page.text and 'id="cancel-form"' not in page.text
    r = browser.post(f"/ui/jobs/{job['id']}/resume", data={"csrf": csrf}, follow_redirects=False)
    assert 400 <= r.status_code < 500 and "<h1>" in r.text


def test_another_users_things_are_404_pages(api):
    owner = api.user()
    job = submit(owner, TINY_FP)
    _, browser, csrf = signed_in(api)
    for path in [
        f"/ui/jobs/{job['id']}",
        f"/ui/jobs/{job['id']}/panel",
        f"/ui/jobs/{job['id']}/logs",
        f"/ui/jobs/{job['id']}/events",
        f"/ui/jobs/{job['id']}/artifacts/result.json",
        "/ui/sweeps/999999",
        "/ui/jobs/abc",
        "/ui/jobs/99999999999",
    ]:
        r = browser.get(path, follow_redirects=False)
        assert r.status_code == 404, (path, r.status_code)
        if "text/html" in r.headers["content-type"]:
            assert "<h1>Not found</h1>" in r.text, path
    r = browser.post(f"/ui/jobs/{job['id']}/cancel", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 404
    assert owner.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"


def test_user_text_is_escaped_on_every_page(api):
    user, browser, _ = signed_in(api)
    job = submit(user, spec(TINY_FP, name=XSS))
    for path in ("/ui/jobs", f"/ui/jobs/{job['id']}"):
        text = browser.get(path).text
        assert XSS not in text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path
    # The page data block is JSON inside <script type="application/json">: no '</script>' in it.
    data = browser.get(f"/ui/jobs/{job['id']}").text.split('id="page-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data


def test_every_ui_response_carries_the_security_headers(api):
    _, browser, _ = signed_in(api)
    responses = [browser.get(p) for p in PAGES]
    responses += [browser.get("/ui/jobs/999999"), api.client().get("/ui/login"), browser.get("/ui/static/app.js")]
    for r in responses:
        csp = r.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, r.url
        assert r.headers.get("x-content-type-options") == "nosniff", r.url
    # Pages load no script from elsewhere and have no inline script.
    for r in responses[:4]:
        for tag in re.findall(r"<script[^>]*>", r.text):
            assert 'src="/ui/static/' in tag or 'type="application/json"' in tag, tag
    # The API itself is unchanged (its JSON errors, no page headers).
    assert "content-security-policy" not in api.client().get("/healthz").headers


def test_jobs_page_filters_and_pages(api):
    user, browser, _ = signed_in(api)
    ids = [submit(user, spec(TINY_FP, name=f"alpha-{i}"))["id"] for i in range(3)]
    other = submit(user, spec(TINY_FP, name="beta"))["id"]
    user.post(f"/v1/jobs/{ids[0]}/cancel")
    page = browser.get("/ui/jobs").text
    shown = [int(x) for x in re.findall(r'<tr data-job-id="(\d+)"', page)]
    assert shown[:4] == [other, *reversed(ids)]  # newest first
    page = browser.get("/ui/jobs", params={"name": "alpha"}).text
    assert sorted(int(x) for x in re.findall(r'<tr data-job-id="(\d+)"', page)) == ids
    page = browser.get("/ui/jobs", params={"status": "cancelled", "name": "alpha"}).text
    assert [int(x) for x in re.findall(r'<tr data-job-id="(\d+)"', page)] == [ids[0]]
    r = browser.get("/ui/jobs", params={"name": "a\x00b"})
    assert r.status_code == 422 and "name" in r.text and "<h1>Invalid request</h1>" in r.text
    with api.settings(page_size_default=2):
        first = browser.get("/ui/jobs", params={"name": "alpha"}).text
        assert len(re.findall(r"<tr data-job-id=", first)) == 2
        next_url = re.search(r'id="next-page" href="([^"]+)"', first)[1].replace("&amp;", "&")
        rest = browser.get(next_url).text
        assert [int(x) for x in re.findall(r'<tr data-job-id="(\d+)"', rest)] == [ids[0]]
        assert 'id="next-page"' not in rest


def test_job_page_shows_spec_and_data_for_the_live_parts(api):
    user, browser, _ = signed_in(api)
    job = submit(user, TINY_CTTV2)
    page = browser.get(f"/ui/jobs/{job['id']}").text
    assert 'data-status="queued"' in page and 'id="cancel-form"' in page
    assert "algorithm: c-ttv2" in page  # the spec as YAML
    assert f'"events": "/ui/jobs/{job["id"]}/events"' in page or f"/ui/jobs/{job['id']}/events" in page
    logs = browser.get(f"/ui/jobs/{job['id']}/logs").json()
    assert logs == {"lines": [], "next_offset": 0, "done": False}


def test_admin_page_is_for_admins_and_shows_counts_only(api):
    user, browser, _ = signed_in(api)
    submit(user, spec(TINY_FP, name="secret-name"))
    r = browser.get("/ui/admin")
    assert r.status_code == 403 and "<h1>Forbidden</h1>" in r.text
    admin = api.user(admin=True)
    _, admin_browser, _ = signed_in(api, admin)
    page = admin_browser.get("/ui/admin").text
    assert 'id="queues"' in page and f'data-user="{user.name}"' in page and 'id="workers"' in page
    assert "secret-name" not in page


def test_presets_and_devices_pages(api):
    user, browser, _ = signed_in(api)
    r = user.post("/v1/device-specs", json={"name": XSS, "spec": {"family": "SoftBoundsReference", "dw_min": 0.01}})
    assert r.status_code == 201, r.text
    page = browser.get("/ui/devices").text
    assert "&lt;script&gt;" in page and XSS not in page and "SoftBoundsReference" in page
    page = browser.get("/ui/presets").text
    assert 'id="presets"' in page and 'data-knob="sp_skew"' in page and 'data-family="SoftBoundsReference"' in page
    # The paper's non-idealities (which knob is which) and both model families with their sizes.
    assert page.count('<tr data-knob="device.') == 12 and 'data-knob="device.up_down"' in page
    assert 'data-model="resnet18_cifar"' in page and "11,173,962" in page and "21 / 74" in page  # layers / tiles
