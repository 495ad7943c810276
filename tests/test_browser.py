"""The counter app in real headless Chromium (Debian's `chromium`, driven by Playwright).

Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from server.testing import ROOT, LiveServer

ARTIFACTS = ROOT / "test-artifacts"
# A click shows up in the other browser within SYNC_TARGET_S on this machine; the test
# allows SYNC_MS, so a machine 3x slower still passes, and records what it measured in
# test-artifacts/browser-sync.txt (a figure to read, not a timed assertion).
SYNC_TARGET_S = 3.0
SYNC_MS = 10_000
SPACE_URL = re.compile(r"/space/([A-Za-z0-9_-]{1,64})(\?|$)")


@dataclass
class Tab:
    """A page in its own browser context (own storage: like another browser)."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


@pytest.fixture
def open_tab(browser: Browser, live_server: LiveServer) -> Iterator[Callable[..., Tab]]:
    tabs: list[Tab] = []

    def open_tab(path: str, width: int = 720) -> Tab:
        context = browser.new_context(viewport={"width": width, "height": 640})
        tab = Tab(context, context.new_page())
        tab.page.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
        tab.page.on("pageerror", lambda e: tab.errors.append(str(e)))
        # Nothing may come from anywhere but this server.
        tab.page.on(
            "request",
            lambda r: r.url.startswith((live_server.url + "/", "data:")) or tab.foreign.append(r.url),
        )
        tab.page.goto(live_server.url + path)
        tabs.append(tab)
        return tab

    yield open_tab
    for tab in tabs:
        tab.context.close()


def space_of(page: Page) -> str:
    match = SPACE_URL.search(page.url)
    assert match, page.url
    return match.group(1)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_two_browsers_stay_in_sync_through_pokes(open_tab, live_server):
    a = open_tab("/?pullInterval=off")
    expect(a.page).to_have_url(SPACE_URL)
    b = open_tab(a.page.url.removeprefix(live_server.url))
    assert space_of(b.page) == space_of(a.page)
    for tab in (a, b):
        expect(tab.page.locator("#count")).to_have_text("0")
        # No interval pulls: only a poke can make the other page pull.
        assert tab.page.evaluate("rep.pullInterval") is None

    took = []
    start = time.monotonic()
    for _ in range(3):
        a.page.click("#increment")
    expect(a.page.locator("#count")).to_have_text("3")
    expect(b.page.locator("#count")).to_have_text("3", timeout=SYNC_MS)
    took.append(time.monotonic() - start)

    start = time.monotonic()
    b.page.get_by_role("button", name="+1: add one to the count").click()
    b.page.click("#increment")
    expect(a.page.locator("#count")).to_have_text("5", timeout=SYNC_MS)
    took.append(time.monotonic() - start)
    expect(b.page.locator("#count")).to_have_text("5")
    record_sync("two browsers, a -> b and b -> a", took)

    for tab, name in ((a, "counter-a"), (b, "counter-b")):
        expect(tab.page.locator("#pending")).to_have_text("0")
        expect(tab.page.locator("#online-text")).to_have_text("Online")
        expect(tab.page.locator("#space-id")).to_have_text(space_of(a.page))
        shot(tab.page, name)
        assert tab.errors == []
        assert tab.foreign == []


def record_sync(what: str, seconds: list[float]) -> None:
    """Print and keep the click-to-other-browser times, against SYNC_TARGET_S."""
    line = f"{what}: " + ", ".join(f"{t:.2f} s" for t in seconds)
    line += f" (target {SYNC_TARGET_S:.0f} s: {'met' if max(seconds) <= SYNC_TARGET_S else 'NOT met'})"
    print(line)
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "browser-sync.txt").open("a") as out:
        out.write(line + "\n")


def test_root_lands_on_a_new_space(open_tab, live_server):
    first = open_tab("/")
    second = open_tab("/", width=360)  # a phone
    for tab in (first, second):
        expect(tab.page).to_have_url(SPACE_URL)
        expect(tab.page.locator("#count")).to_have_text("0")
        space = space_of(tab.page)
        expect(tab.page.locator("#space-id")).to_have_text(space)
        expect(tab.page.locator("#share-link")).to_have_value(f"{live_server.url}/space/{space}")
        assert tab.errors == []
    assert space_of(first.page) != space_of(second.page)
    # The Copy button puts the share link on the clipboard.
    first.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    first.page.click("#copy")
    expect(first.page.locator("#copied")).to_have_text("Link copied.")
    link = f"{live_server.url}/space/{space_of(first.page)}"
    assert first.page.evaluate("() => navigator.clipboard.readText()") == link
    # Narrow screens: nothing sticks out sideways.
    assert second.page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(first.page, "new-space")
    shot(second.page, "new-space-narrow")


def test_unknown_space_explains_and_links_to_a_new_one(open_tab):
    tab = open_tab("/space/no-such-space")
    expect(tab.page.locator("h1")).to_have_text("No such space")
    expect(tab.page.locator("#message")).to_contain_text('"no-such-space"')
    shot(tab.page, "unknown-space")
    tab.page.click("#new-space")
    expect(tab.page).to_have_url(SPACE_URL)
    assert space_of(tab.page) != "no-such-space"
    expect(tab.page.locator("#count")).to_have_text("0")


def test_offline_clicks_wait_and_then_sync(open_tab, live_server):
    a = open_tab("/?pullInterval=off")
    b = open_tab(a.page.url.removeprefix(live_server.url))
    for tab in (a, b):
        expect(tab.page.locator("#count")).to_have_text("0")

    a.context.set_offline(True)
    a.page.click("#increment")
    a.page.click("#increment")
    expect(a.page.locator("#count")).to_have_text("2")  # optimistic, local
    expect(a.page.locator("#online-text")).to_have_text("Offline")
    expect(a.page.locator("#pending")).to_have_text("2")
    shot(a.page, "offline")
    expect(b.page.locator("#count")).to_have_text("0")

    a.context.set_offline(False)
    # Replicache retries with backoff after failures, so allow more than a poke's 3 s.
    expect(a.page.locator("#online-text")).to_have_text("Online", timeout=15_000)
    expect(b.page.locator("#count")).to_have_text("2", timeout=15_000)
    expect(a.page.locator("#pending")).to_have_text("0", timeout=15_000)
    expect(a.page.locator("#count")).to_have_text("2")
    assert b.errors == []


def test_page_passes_a_token_when_the_server_requires_one(browser, client_dist, tmp_path):
    secret = "browser-test-secret-" + "s" * 16
    with LiveServer(data_dir=tmp_path, env={"AUTH_SECRET": secret, "PUBLIC_DEMO": "1"}) as server:
        contexts = [browser.new_context() for _ in range(2)]
        try:
            a, b = (context.new_page() for context in contexts)
            a.goto(server.url + "/?pullInterval=off")
            expect(a).to_have_url(SPACE_URL)
            b.goto(a.url)
            for page in (a, b):
                expect(page.locator("#count")).to_have_text("0")
            start = time.monotonic()
            a.click("#increment")
            a.click("#increment")
            # Pushes carry the token (Authorization), the poke stream its auth= parameter.
            expect(b.locator("#count")).to_have_text("2", timeout=SYNC_MS)
            record_sync("two browsers with auth on", [time.monotonic() - start])
            expect(a.locator("#pending")).to_have_text("0")
            space = space_of(a)
            # The same pull without a token is refused: the token did the work above.
            request = urllib.request.Request(
                f"{server.url}/api/replicache/pull?spaceID={space}",
                json.dumps({"clientGroupID": "g", "cookie": None, "pullVersion": 1}).encode(),
                {"Content-Type": "application/json"},
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401
        finally:
            for context in contexts:
                context.close()
