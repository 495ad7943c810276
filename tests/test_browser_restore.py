"""The counter page in Chromium when its space is restored from a backup (issue 14): each
open page gets ClientStateNotFound, drops its local store, reloads once, and shows the
backup's count; clicks sync on from there."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from playwright.sync_api import Page, expect

from server.testing import LiveServer

TOKEN = "browser-restore-token-" + "z" * 16
SYNC_MS = 3000  # test_browser.py's bound for a click to show up in the other browser
CSN_LINE = "Client state not found on server"


def admin(server: LiveServer, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{server.url}/admin/api/{path}",
        None if body is None else json.dumps(body).encode(),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_pages_start_over_once_from_a_restored_backup(browser, client_dist, tmp_path):
    with LiveServer("--admin-token", TOKEN, data_dir=tmp_path) as server:
        space = admin(server, "POST", "spaces", {"spaceID": "restore-me"})["spaceID"]
        contexts = [browser.new_context() for _ in range(2)]
        pages: list[Page] = [context.new_page() for context in contexts]
        loads = [0, 0]
        errors: list[list[str]] = [[], []]
        try:
            for i, page in enumerate(pages):
                page.on("load", lambda _, i=i: loads.__setitem__(i, loads[i] + 1))
                page.on("console", lambda m, i=i: m.type == "error" and errors[i].append(m.text))
                page.on("pageerror", lambda e, i=i: errors[i].append(str(e)))
                page.goto(f"{server.url}/space/{space}?pullInterval=off")
                expect(page.locator("#count")).to_have_text("0")
            a, b = pages
            for _ in range(3):
                a.click("#increment")
            expect(b.locator("#count")).to_have_text("3", timeout=SYNC_MS)
            expect(a.locator("#pending")).to_have_text("0")
            backup = admin(server, "GET", f"spaces/{space}/export")

            b.click("#increment")
            b.click("#increment")
            expect(a.locator("#count")).to_have_text("5", timeout=SYNC_MS)
            restored = admin(server, "POST", f"spaces/{space}/import", backup)
            assert restored["entries"] == 1

            for page in pages:  # a poke, a pull, ClientStateNotFound, a reload
                expect(page.locator("#count")).to_have_text("3", timeout=10_000)
            assert loads == [2, 2]
            b.click("#increment")
            expect(a.locator("#count")).to_have_text("4", timeout=SYNC_MS)
            for page in pages:
                expect(page.locator("#pending")).to_have_text("0")
            assert loads == [2, 2]  # no further reloads: the new groups are the server's
            for lines in errors:
                assert [line for line in lines if CSN_LINE not in line] == []
        finally:
            for context in contexts:
                context.close()
