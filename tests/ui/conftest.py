"""The dashboard's browser tests: a live stack (API + one worker on PostgreSQL + Redis) and
headless chromium driven by Playwright.

The browser is Debian's /usr/bin/chromium (scripts/setup.sh installs it); nothing downloads a
browser at run time (never `playwright install`). A missing chromium fails the tests, it does
not skip them.

Every page a test opens records the console's errors and uncaught page errors; a test whose
pages logged any fails (the dashboard's console must stay clean). A test that means to load an
error page (401, 404) allows that one message with `ui.allow_console(page, pattern)`.

Screenshots go to $CTTV2_SCREENSHOT_DIR when set (`make screenshots`: docs/screenshots), else
to a pytest tmp folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fast import api, fast_backend  # noqa: F401  (the fast page tests' fixtures)
from tests.support.stack import Stack, running_stack

CHROMIUM = Path(os.environ.get("CTTV2_CHROMIUM", "/usr/bin/chromium"))
SETUP_HINT = "run scripts/setup.sh (it installs Debian's chromium and Playwright for Python into .venv)"

PAGE_SIZE = 4
_PAGE_ERRORS = pytest.StashKey["Browsing"]()


# -- the stack -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory) -> Iterator[Stack]:
    """API + one worker on PostgreSQL + Redis, for this module's tests. Lists page by
    PAGE_SIZE so that a handful of jobs fills more than one page."""
    env = {"CTTV2_PAGE_SIZE_DEFAULT": str(PAGE_SIZE)}
    with running_stack("postgres", tmp_path_factory.mktemp("stack-ui"), env) as s:
        yield s


@dataclass
class User:
    name: str
    token: str
    api: httpx.Client


@pytest.fixture(scope="module")
def alice(ui_stack: Stack) -> Iterator[User]:
    token = ui_stack.create_user("alice")
    with ui_stack.client(token) as client:
        yield User("alice", token, client)


@pytest.fixture(scope="module")
def bob(ui_stack: Stack) -> Iterator[User]:
    token = ui_stack.create_user("bob")
    with ui_stack.client(token) as client:
        yield User("bob", token, client)


@pytest.fixture(scope="module")
def admin(ui_stack: Stack) -> Iterator[User]:
    token = ui_stack.create_user("root", admin=True)
    with ui_stack.client(token) as client:
        yield User("root", token, client)


# -- the browser ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: the browser tests need it; {SETUP_HINT}", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright for Python is not installed; {SETUP_HINT}", pytrace=False)
    # Chromium will not start its sandbox as root (CI containers): --no-sandbox there only.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        except Exception as exc:  # any launch failure gets the same hint
            pytest.fail(f"chromium at {CHROMIUM} did not start ({exc}); {SETUP_HINT}", pytrace=False)
        yield b
        b.close()


@dataclass
class Browsing:
    """The pages a test opened, and what their consoles said."""

    browser: Any
    base_url: str
    errors: list[str] = field(default_factory=list)
    allowed: dict[int, list[re.Pattern[str]]] = field(default_factory=dict)
    contexts: list[Any] = field(default_factory=list)

    def page(self, token: str | None = None):
        """A new browser context (its own cookies) and page; signed in with `token` if given."""
        context = self.browser.new_context(base_url=self.base_url, accept_downloads=True)
        context.set_default_timeout(30_000)
        self.contexts.append(context)
        page = context.new_page()
        self.watch(page)
        if token is not None:
            sign_in(page, token)
        return page

    def watch(self, page) -> None:
        def on_console(msg) -> None:
            if msg.type == "error":
                self._record(page, f"console error on {page.url}: {msg.text} ({msg.location})")

        def on_pageerror(exc) -> None:
            self._record(page, f"uncaught error on {page.url}: {exc}")

        page.on("console", on_console)
        page.on("pageerror", on_pageerror)

    def allow_console(self, page, pattern: str) -> None:
        """An error this test expects from `page` (e.g. the 404 of a page it means to load)."""
        self.allowed.setdefault(id(page), []).append(re.compile(pattern))

    def _record(self, page, text: str) -> None:
        if not any(p.search(text) for p in self.allowed.get(id(page), [])):
            self.errors.append(text)

    def close(self) -> None:
        for context in self.contexts:
            try:
                context.close()
            except Exception:  # the browser may be gone already
                pass


@pytest.fixture
def ui(request, browser, ui_stack: Stack) -> Iterator[Browsing]:
    """Opens pages; the test fails if any of them logged a console error or threw."""
    browsing = Browsing(browser, ui_stack.url)
    request.node.stash[_PAGE_ERRORS] = browsing
    yield browsing
    browsing.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield  # a test that failed already keeps its own failure
    browsing = item.stash.get(_PAGE_ERRORS, None)
    if browsing is not None and browsing.errors:
        pytest.fail("the pages logged errors:\n" + "\n".join(browsing.errors), pytrace=False)
    return result


def sign_in(page, token: str) -> None:
    page.goto("/ui/login")
    page.fill("form#login input[name=token]", token)
    with page.expect_navigation():
        page.click("form#login button[type=submit]")
    assert page.url.endswith("/ui/jobs"), f"signing in landed on {page.url}"


# -- screenshots ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    configured = os.environ.get("CTTV2_SCREENSHOT_DIR")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def shoot(screenshot_dir: Path):
    """shoot(page, "jobs.png"): a full-page screenshot into the screenshot folder."""

    def save(page, name: str) -> Path:
        path = screenshot_dir / name
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        return path

    return save
