"""Who may call what (issue 17): every route x method, with auth off, on (--auth-secret)
and on with --public-demo, anonymous and with a token for another space or for any space.

TABLE is the one list of expected answers; README.md ("Who may call what") shows it, and
test_the_readme_shows_the_table checks that it does. Any method a row does not name gets
405 on that path (404 where the path's row says 404). Every route of the app must match a
row (test_the_table_covers_every_route), and every /admin route refuses without the
admin's credentials, whatever is added later (test_admin_route_refuses_strangers).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from server.app import make_app
from server.auth import mint
from server.config import Settings
from server.pokes import PokeHub
from tests.helpers import mutation, uid

pytestmark = pytest.mark.gen_test

SECRET = "routes-test-secret-" + "r" * 16
ADMIN = "routes-admin-token-" + "a" * 16
S = "routes-space"
MODES = {"off": {}, "on": {"auth_secret": SECRET}, "demo": {"auth_secret": SECRET, "public_demo": True}}
TOKENS = {
    "anonymous": None,
    "other space": mint(SECRET, "elsewhere", "mallory"),
    "any space": mint(SECRET, "*", "app"),
}
COLUMNS = [
    ("off", "anonymous"),
    ("off", "other space"),
    ("on", "anonymous"),
    ("on", "other space"),
    ("on", "any space"),
    ("demo", "anonymous"),
    ("demo", "other space"),
]
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
APP_JS = "app.js"  # stands for the bundle's hashed app-<hash>.js
CHECKED = (200, 200, 401, 403, 200, 401, 403)  # push, pull, poke, createSpace
OPEN = (200,) * 7
PREFLIGHT = (204,) * 7
NOT_ALLOWED = (405,) * 7

# (method, paths, answers in COLUMNS order). "200 token": a page with a token in it.
TABLE: list[tuple[str, tuple[str, ...], tuple[Any, ...]]] = [
    ("GET", ("/healthz", "/readyz", "/metrics"), OPEN),
    ("OPTIONS", ("/healthz", "/readyz", "/metrics"), NOT_ALLOWED),
    ("POST", (f"/api/replicache/push?spaceID={S}", f"/api/replicache/pull?spaceID={S}"), CHECKED),
    ("POST", ("/api/replicache/createSpace",), CHECKED),
    ("POST", ("/api/replicache/spaceExists",), OPEN),
    ("GET", (f"/api/replicache/poke?spaceID={S}",), CHECKED),
    (
        "OPTIONS",
        (
            f"/api/replicache/push?spaceID={S}",
            f"/api/replicache/pull?spaceID={S}",
            "/api/replicache/createSpace",
            "/api/replicache/spaceExists",
            f"/api/replicache/poke?spaceID={S}",
        ),
        PREFLIGHT,
    ),
    ("GET", ("/",), (303, 303, 401, 403, 303, 303, 303)),
    ("GET", (f"/space/{S}",), (200, 200, 200, 200, 200, "200 token", "200 token")),
    ("GET", (f"/space/{S}/auth",), (404, 404, 404, 404, 404, 200, 200)),
    ("GET", (f"/static/dist/{APP_JS}",), OPEN),
    ("HEAD", (f"/static/dist/{APP_JS}",), OPEN),
    ("GET", ("/no/such/route",), (404,) * 7),
]
NOTE = "Any other method: 405 (404 where the path is not there)."


def expected(method: str, path: str) -> tuple[Any, ...]:
    for row_method, paths, answers in TABLE:
        if path in paths and row_method == method:
            return answers
    rows = [answers for _, paths, answers in TABLE if path in paths]
    return tuple(404 if any(row[i] == 404 for row in rows) else 405 for i in range(len(COLUMNS)))


def shown(paths: tuple[str, ...]) -> str:
    """`/api/replicache/push`, `pull`: no query, the space as <id>, siblings by name."""
    names = [p.split("?")[0].replace(S, "<id>").replace(APP_JS, "app-<hash>.js") for p in paths]
    folder = names[0].rsplit("/", 1)[0] + "/"
    return ", ".join(
        f"`{n if i == 0 or not n.startswith(folder) else n.removeprefix(folder)}`"
        for i, n in enumerate(names)
    )


def markdown() -> str:
    head = "| request | " + " | ".join(f"{mode}: {who}" for mode, who in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for method, paths, answers in TABLE:
        request = f"{method} {shown(paths)}"
        lines.append(f"| {request} | " + " | ".join(str(a) for a in answers) + " |")
    return "\n".join(lines)


async def call(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, bytes]:
    """One raw HTTP/1.1 request: (status, body); an event stream's body is not waited for."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
        )
        writer.write(body)
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = raw.decode("latin1").split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        length = int(fields.get("content-length", "0"))
        content = b"" if method == "HEAD" else await asyncio.wait_for(reader.readexactly(length), 10)
        return int(lines[0].split()[1]), content
    finally:
        writer.close()


def request_body(method: str, path: str) -> bytes:
    if method != "POST":
        return b""
    if "/push" in path:
        body: Any = {
            "profileID": "p",
            "clientGroupID": uid("g-"),
            "pushVersion": 1,
            "mutations": [mutation(1, uid("c-"))],
        }
    elif "/pull" in path:
        body = {"profileID": "p", "clientGroupID": uid("g-"), "cookie": None, "pullVersion": 1}
    elif "/createSpace" in path:
        body = {"spaceID": uid("new-")}
    else:
        body = {"spaceID": S}
    return json.dumps(body).encode()


def app_js(client_dist: Path) -> str:
    return json.loads((client_dist / "manifest.json").read_text())["assets"]["app.js"]


@pytest.fixture
def settings(request) -> Settings:
    """Indirect params: a mode's name, or Settings fields."""
    return Settings(**(MODES[request.param] if isinstance(request.param, str) else request.param))


@pytest.mark.parametrize("settings", list(MODES), indirect=True)
async def test_every_route_and_method(settings, http_server, http_port, store, client_dist):
    mode = "demo" if settings.public_demo else "on" if settings.auth_secret else "off"
    await store.create_space(S)
    bundle = app_js(client_dist)
    paths = sorted({p for _, ps, _ in TABLE for p in ps})
    failures = []
    for column, (column_mode, who) in enumerate(COLUMNS):
        if column_mode != mode:
            continue
        token = TOKENS[who]
        for path in paths:
            for method in METHODS:
                want = expected(method, path)[column]
                headers = {"Content-Type": "application/json"}
                if token:
                    headers["Authorization"] = token
                if method == "OPTIONS":
                    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
                real = path.replace(APP_JS, bundle)
                status, content = await call(http_port, method, real, headers, request_body(method, path))
                if status != int(str(want).split()[0]):
                    failures.append(f"{mode}, {who}: {method} {path} -> {status}, want {want}")
                elif method == "GET" and path == f"/space/{S}":
                    has_token = b'name="replicache-auth"' in content
                    if has_token != (want == "200 token"):
                        failures.append(f"{mode}, {who}: {path} token in page: {has_token}, want {want}")
    assert failures == []


def app_rules(**fields: Any) -> list[str]:
    """The app's route patterns, as make_app builds them."""
    app = make_app(Settings(**fields), None, PokeHub())  # type: ignore[arg-type]
    return [rule.matcher.regex.pattern for rule in app.wildcard_router.rules]  # type: ignore[attr-defined]


def test_the_table_covers_every_route():
    paths = [p.split("?")[0].replace(APP_JS, "app-HASH.js") for _, ps, _ in TABLE for p in ps]
    for fields in MODES.values():
        for pattern in app_rules(**fields):
            assert any(re.fullmatch(pattern.removesuffix("$"), p) for p in paths), (
                f"no TABLE row for {pattern}"
            )


def test_the_readme_shows_the_table():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert markdown() in readme, "README.md must show this table:\n" + markdown()
    assert NOTE in readme


ADMIN_PATTERNS = [p for p in app_rules(admin_token=ADMIN) if p.startswith("/admin")]


def admin_path(pattern: str) -> str:
    """A concrete path for a route pattern: files for (.*), the test's space elsewhere."""
    path = pattern.removesuffix("$").replace("/?", "/")
    path = path.replace("(.*)", "admin.js")
    return re.sub(r"\([^)]*\)", S, path) + f"?spaceID={S}"


@pytest.mark.parametrize("settings", [{"auth_secret": SECRET, "admin_token": ADMIN}], indirect=True)
@pytest.mark.parametrize("pattern", ADMIN_PATTERNS)
async def test_admin_route_refuses_strangers(pattern, settings, http_server, http_port, store):
    """Every admin route (pages, JSON APIs, static files), every method: without the
    admin's credentials, a refusal that shows nothing; with them, not a refusal. An app
    token is not an admin credential."""
    await store.create_space(S)
    path = admin_path(pattern)
    strangers = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKENS['any space']}"}]
    for method in METHODS:
        for headers in strangers:
            status, content = await call(http_port, method, path, headers, b"" if method != "POST" else b"{}")
            assert status in (401, 403, 405), (method, path, headers, status)
            assert S.encode() not in content and b"setupSpace" not in content, (method, path)
    status, _ = await call(http_port, "GET", path, {"Authorization": f"Bearer {ADMIN}"})
    assert status not in (401, 403), (path, status)
