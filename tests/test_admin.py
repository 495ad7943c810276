"""The admin inspector (issue 8): token checks, JSON APIs, login cookie, the page in Chromium."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import async_playwright, expect
from tornado.httpclient import HTTPResponse
from tornado.web import create_signed_value

from server.admin.base import COOKIE, cookie_secret
from server.mutators import MUTATORS
from server.store import Store
from server.testing import SSE
from tests.helpers import launch_chromium, mutation, uid

pytestmark = pytest.mark.gen_test

TOKEN = "test-admin-token-" + "x" * 20
ADMIN = [{"admin_token": TOKEN}]
BEARER = {"Authorization": f"Bearer {TOKEN}"}
UNAUTHORIZED_PAGE = "Failed to load resource: the server responded with a status of 401"
ROOT = Path(__file__).resolve().parent.parent


async def set_value(tx: Any, args: Any) -> None:
    await tx.put(args["key"], args["value"])


@pytest.fixture
def store(io_loop, mongo_client, db_name, settings, hub) -> Store:
    """The usual store with one more mutator, to make entries with any key."""
    store = Store(mongo_client, db_name, mutators={**MUTATORS, "set": set_value}, on_commit=hub.poke)
    io_loop.run_sync(store.init)
    return store


async def call(
    http_client, base_url, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, HTTPResponse]:
    r = await http_client.fetch(
        base_url + path,
        method=method,
        headers={"Content-Type": "application/json", **(headers if headers is not None else BEARER)},
        body=None if body is None and method in ("GET", "DELETE") else json.dumps(body or {}),
        raise_error=False,
        follow_redirects=False,
    )
    text = r.body.decode() if r.body else ""
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return r.code, parsed, r


async def test_admin_is_off_without_a_token(http_client, base_url):
    for path in ("/admin", "/admin/api/spaces", "/admin/static/admin.css"):
        status, body, _ = await call(http_client, base_url, "GET", path)
        assert status == 404 and body["error"] == "NotFound"


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_api_refuses_without_the_token(settings, http_client, base_url):
    refused = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ]
    for headers in refused:
        status, body, r = await call(http_client, base_url, "GET", "/admin/api/spaces", headers=headers)
        assert status == 401 and body["error"] == "Unauthorized", headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        status, _, _ = await call(http_client, base_url, "POST", "/admin/api/spaces", {}, headers=headers)
        assert status == 401
    status, body, r = await call(http_client, base_url, "GET", "/admin/api/spaces")
    assert status == 200 and "spaces" in body
    assert "Access-Control-Allow-Origin" not in r.headers  # same-origin only


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_guessing_is_cut_short(settings, http_client, base_url):
    for i in range(20):
        status, _, _ = await call(
            http_client, base_url, "GET", "/admin/api/spaces", headers={"Authorization": f"Bearer guess{i}"}
        )
        assert status == 401
    status, body, _ = await call(http_client, base_url, "GET", "/admin/api/spaces")  # even the right one
    assert status == 429 and body["error"] == "TooManyAttempts"
    r = await http_client.fetch(
        base_url + "/admin/login", method="POST", body=f"token={quote(TOKEN)}", raise_error=False
    )
    assert r.code == 429 and "Set-Cookie" not in r.headers


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_spaces_list_counts_search_and_paging(settings, api, http_client, base_url):
    prefix = uid("adm-")
    ids = [await api.create_space(f"{prefix}-{i}") for i in range(5)]
    await api.create_space(uid("other-"))
    c = uid("c-")
    assert (await api.push(ids[2], "g1", [mutation(1, c), mutation(2, c)])).status == 200
    for q in (prefix, ""):  # by prefix, and all spaces (by their creation order)
        seen, before = [], ""
        while True:
            status, page, _ = await call(
                http_client, base_url, "GET", f"/admin/api/spaces?q={q}&limit=2{before}"
            )
            assert status == 200 and len(page["spaces"]) <= 2
            seen += [s["spaceID"] for s in page["spaces"] if s["spaceID"].startswith(prefix)]
            if page["next"] is None:
                break
            before = f"&before={page['next']}"
        assert seen == ids[::-1]  # newest first
        assert page["total"] >= 5 if not q else page["total"] == 5
    _, page, _ = await call(http_client, base_url, "GET", f"/admin/api/spaces?q={ids[2]}")
    [row] = page["spaces"]
    assert row["version"] == 1 and row["entries"] == 1 and row["clientGroups"] == 1
    assert row["clients"] == 1 and row["listeners"] == 0 and row["modified"].endswith("Z")
    for bad in ("q=a%20b", "q=%5E.*", "limit=0", "limit=1000", "before=-1", "limit=x", "before=x"):
        status, body, _ = await call(http_client, base_url, "GET", f"/admin/api/spaces?{bad}")
        assert status == 400 and body["error"].startswith("Invalid"), bad


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_space_view_entries_and_export(settings, api, http_client, base_url):
    space = await api.create_space()
    a, b = uid("ca-"), uid("cb-")
    value = {"nested": [1, 2.5, "ü", None, True], "big": 2**53 - 1, "huge": 1.2345678901234568e19}
    muts = [mutation(i + 1, a, "set", {"key": f"k{i:02}", "value": i}) for i in range(5)]
    assert (await api.push(space, "ga", muts)).status == 200
    assert (await api.push(space, "ga", [mutation(1, b, "set", {"key": "v", "value": value})])).status == 200
    await api.pull(space, "gb")  # a group that only pulled

    status, view, _ = await call(http_client, base_url, "GET", f"/admin/api/spaces/{space}")
    assert status == 200 and view["version"] == 2 and view["entries"] == 6
    assert view["clientGroups"] == 2 and view["clients"] == 2
    groups = {g["clientGroupID"]: g for g in view["groups"]}
    assert set(groups) == {"ga", "gb"} and groups["gb"]["clients"] == []
    clients = {c["clientID"]: c for c in groups["ga"]["clients"]}
    assert clients[a]["lastMutationID"] == 5 and clients[b]["lastMutationID"] == 1
    assert clients[a]["lastSeen"] <= clients[b]["lastSeen"] == groups["ga"]["lastSeen"]

    keys, after = [], ""
    while True:
        status, page, _ = await call(
            http_client, base_url, "GET", f"/admin/api/spaces/{space}/entries?limit=4&after={quote(after)}"
        )
        assert status == 200 and len(page["entries"]) <= 4
        keys += [e["key"] for e in page["entries"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert keys == ["k00", "k01", "k02", "k03", "k04", "v"]

    status, exported, r = await call(http_client, base_url, "GET", f"/admin/api/spaces/{space}/export")
    assert status == 200 and "attachment" in r.headers["Content-Disposition"]
    assert exported["space"]["spaceID"] == space
    assert {e["key"]: e["value"] for e in exported["entries"]} == {
        **{f"k{i:02}": i for i in range(5)},
        "v": value,
    }
    status, _, _ = await call(http_client, base_url, "GET", "/admin/api/spaces/never-made/export")
    assert status == 404
    status, body, _ = await call(http_client, base_url, "GET", "/admin/api/spaces/bad%20id")
    assert status == 400 and body["error"] == "InvalidSpaceID"


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_create_and_delete_a_space(settings, api, http_client, base_url, hub):
    space = uid("del-")
    status, body, _ = await call(http_client, base_url, "POST", "/admin/api/spaces", {"spaceID": space})
    assert status == 201 and body == {"spaceID": space}
    status, body, _ = await call(http_client, base_url, "POST", "/admin/api/spaces", {"spaceID": space})
    assert status == 409
    status, body, _ = await call(http_client, base_url, "POST", "/admin/api/spaces", {})
    assert status == 201 and body["spaceID"]

    assert (await api.push(space, "g1", [mutation(1, uid("c-"))])).status == 200
    pulled = await api.pull(space, "g1")
    cookie = pulled.body["cookie"]
    assert (await api.pull(space, "g1", cookie)).status == 200  # the in-memory fast path knows it
    stream = await SSE.open(base_url, space)
    try:
        await stream.wait_for("hello")
        status, body, _ = await call(http_client, base_url, "DELETE", f"/admin/api/spaces/{space}")
        assert status == 200 and body == {"deleted": space}
        await stream.wait_for("poke")  # the final poke: the client pulls and learns
        assert await stream.frame() is None and stream.ended  # then the stream ends cleanly
        assert await hub.wait_until(lambda: hub.listener_count(space) == 0, timeout=5)
    finally:
        stream.close()
    # Its old tabs start over (the page then finds the space gone); nothing is written.
    r = await api.pull(space, "g1", cookie)
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    r = await api.push(space, "g1", [mutation(2, uid("c-"))])
    assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"})
    assert (await api.pull(space, "new-group")).status == 404
    status, _, _ = await call(http_client, base_url, "GET", f"/admin/api/spaces/{space}")
    assert status == 404
    status, _, _ = await call(http_client, base_url, "DELETE", f"/admin/api/spaces/{space}")
    assert status == 404
    # Nothing of it is left, and the id can be used again from scratch.
    await api.create_space(space)
    assert await api.view(space) == {}


def _cookie(r: HTTPResponse) -> str:
    [header] = r.headers.get_list("Set-Cookie")
    return header


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_login_cookie(settings, http_client, base_url):
    async def form(path: str, fields: str, cookie: str = "") -> HTTPResponse:
        return await http_client.fetch(
            base_url + path,
            method="POST",
            body=fields,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                **({"Cookie": cookie} if cookie else {}),
            },
            raise_error=False,
            follow_redirects=False,
        )

    page = await http_client.fetch(base_url + "/admin", raise_error=False)
    assert page.code == 401 and b'name="token"' in page.body  # the login form
    r = await form("/admin/login", "token=wrong")
    assert r.code == 401 and "Set-Cookie" not in r.headers
    r = await form("/admin/login", f"token={quote(TOKEN)}")
    assert r.code == 303 and r.headers["Location"] == "/admin"
    header = _cookie(r)
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/admin" in header
    cookie = header.split(";")[0]
    assert TOKEN not in cookie

    with_cookie = {"Cookie": cookie}
    page = await http_client.fetch(base_url + "/admin", headers=with_cookie)
    assert page.code == 200 and b"Create space" in page.body
    status, _, _ = await call(http_client, base_url, "GET", "/admin/api/spaces", headers=with_cookie)
    assert status == 200
    # A cross-site form could carry the cookie, never a custom header.
    status, body, _ = await call(http_client, base_url, "POST", "/admin/api/spaces", {}, headers=with_cookie)
    assert status == 403
    status, _, _ = await call(
        http_client,
        base_url,
        "POST",
        "/admin/api/spaces",
        {},
        headers={**with_cookie, "X-Admin-Request": "1"},
    )
    assert status == 201

    name, _, value = cookie.partition("=")
    tampered = f"{name}={value[:-2]}{'00' if not value.endswith('00') else '11'}"
    status, _, _ = await call(http_client, base_url, "GET", "/admin/api/spaces", headers={"Cookie": tampered})
    assert status == 401
    # Logout needs the page's CSRF token (or X-Admin-Request): another site cannot end the session.
    r = await form("/admin/logout", "", cookie)
    assert r.code == 403
    r = await form("/admin/logout", "csrf=0123", cookie)
    assert r.code == 403
    page = await http_client.fetch(base_url + "/admin", headers=with_cookie)
    [csrf] = re.findall(rb'name="csrf" value="([0-9a-f]{64})"', page.body)
    r = await form("/admin/logout", f"csrf={csrf.decode()}", cookie)
    assert r.code == 303
    cleared = _cookie(r)
    assert cleared.startswith(f'{name}="";') and "Path=/admin" in cleared and "expires=" in cleared.lower()
    # Logout ends the session on the server: the cookie, kept by someone, is dead.
    status, _, _ = await call(http_client, base_url, "GET", "/admin/api/spaces", headers=with_cookie)
    assert status == 401
    page = await http_client.fetch(base_url + "/admin", headers=with_cookie, raise_error=False)
    assert page.code == 401 and b'name="token"' in page.body


@pytest.mark.parametrize("settings", [{"admin_token": "another-token-entirely-1234"}], indirect=True)
async def test_cookie_from_another_token_is_refused(settings, http_client, base_url):
    # Signed correctly for this server's secret but carrying another token's fingerprint.
    forged = create_signed_value(cookie_secret(settings.admin_token, ""), COOKIE, "0" * 64).decode()
    status, _, _ = await call(
        http_client, base_url, "GET", "/admin/api/spaces", headers={"Cookie": f"{COOKIE}={forged}"}
    )
    assert status == 401


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
@pytest.mark.gen_test(timeout=120)
async def test_admin_page_in_chromium(settings, api, base_url):
    space = await api.create_space(uid("demo-"))
    for name in ("todo-list", "whiteboard", "team-notes"):
        other = await api.create_space(uid(f"{name}-"))
        await api.push(other, uid("g-"), [mutation(1, uid("c-"), args=3)])
    c = uid("c-")
    assert (await api.push(space, "group-1", [mutation(1, c, args=41)])).status == 200
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and errors.append(f"{m.text} {m.location}"))
            # (the login page itself answers 401: the one expected error below)
            await page.goto(base_url + "/admin")
            await page.fill("#token", TOKEN)
            await page.click("button[type=submit]")
            row = page.locator(f'tr[data-space="{space}"]')
            await expect(row.locator(".entries")).to_have_text("1")
            await page.screenshot(path=str(artifacts / "admin-spaces.png"))

            await row.locator("a").click()
            await expect(page.locator("#live")).to_have_text("live")
            count = page.locator('tr[data-key="count"] .value')
            await expect(count).to_have_text("41")
            # A push from elsewhere: the page follows through the space's poke stream.
            assert (await api.push(space, "group-1", [mutation(2, c)])).status == 200
            await expect(count).to_have_text("42")
            await expect(page.locator("#version")).to_have_text("2")
            await page.screenshot(path=str(artifacts / "admin-space.png"))

            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await page.click("#delete-space")
            await page.wait_for_url(base_url + "/admin")
            await expect(page.locator(f'tr[data-space="{space}"]')).to_have_count(0)
            made = uid("made-")
            await page.fill("input[name=spaceID]", made)
            await page.click("#create-space button")
            await page.wait_for_url(f"{base_url}/admin/space/{made}")
            await expect(page.locator("#entry-count")).to_have_text("0")
            unexpected = [e for e in errors if not e.startswith(UNAUTHORIZED_PAGE)]
            assert unexpected == [], "\n".join(unexpected)  # no script errors, no CSP violations
        finally:
            await browser.close()
    assert (await api.pull(space, uid("g-"))).status == 404
