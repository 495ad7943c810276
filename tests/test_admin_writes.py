"""Server-side writes (issue 14.2): POST mutate, PUT and DELETE entries/<key>, admin token only."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from server.mutators import MUTATORS
from server.protocol import MAX_VALUE_BYTES
from server.store import Store
from server.testing import listen
from tests.helpers import database_state, mutation, uid
from tests.test_admin import ADMIN, BEARER, TOKEN, call
from tests.test_scripts import SEED, run_script

pytestmark = pytest.mark.gen_test


async def set_title(tx: Any, args: Any) -> None:
    if not isinstance(args, dict) or not isinstance(args.get("title"), str):
        raise TypeError(f"setTitle expects {{title: string}}, got {args!r}")
    await tx.put("title", args["title"])


async def rename(tx: Any, args: Any) -> None:
    """Moves every entry under args["from"] to args["to"]: reads, scans, puts and deletes."""
    for key, value in await tx.scan(args["from"]):
        await tx.delete(key)
        await tx.put(args["to"] + key[len(args["from"]) :], value)


@pytest.fixture
def store(io_loop, mongo_client, db_name, hub) -> Store:
    store = Store(
        mongo_client,
        db_name,
        mutators={**MUTATORS, "setTitle": set_title, "rename": rename},
        on_commit=hub.poke,
    )
    io_loop.run_sync(store.init)
    return store


async def send(
    http_client, base_url, method: str, path: str, raw: bytes | None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """A request with a raw body (call() sends JSON objects only); `headers` replace the token."""
    r = await http_client.fetch(
        base_url + path,
        method=method,
        headers={"Content-Type": "application/json", **(BEARER if headers is None else headers)},
        body=raw,
        raise_error=False,
        allow_nonstandard_methods=True,
    )
    return r.code, json.loads(r.body) if r.body else None


def entry(space: str, key: str) -> str:
    return f"/admin/api/spaces/{quote(space)}/entries/{quote(key, safe='')}"


async def test_write_routes_do_not_exist_without_an_admin_token(api, http_client, base_url, store):
    space = await api.create_space()
    before = await database_state(store)
    for method, path, raw in [
        ("POST", f"/admin/api/spaces/{space}/mutate", b'{"name": "increment", "args": 1}'),
        ("PUT", entry(space, "count"), b"5"),
        ("DELETE", entry(space, "count"), None),
        ("POST", f"/admin/api/spaces/{space}/import", b'{"entries": []}'),
    ]:
        status, body = await send(http_client, base_url, method, path, raw)
        assert status == 404 and body["error"] == "NotFound", path
    assert await database_state(store) == before


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_every_write_needs_the_token_and_cookie_writes_the_header(
    settings, api, http_client, base_url, store
):
    space = await api.create_space()
    login = await http_client.fetch(
        base_url + "/admin/login",
        method="POST",
        body=f"token={quote(TOKEN)}",
        follow_redirects=False,
        raise_error=False,
    )
    cookie = login.headers["Set-Cookie"].split(";")[0]
    before = await database_state(store)
    for method, path, raw in [
        ("POST", f"/admin/api/spaces/{space}/mutate", b'{"name": "increment", "args": 1}'),
        ("PUT", entry(space, "count"), b"5"),
        ("DELETE", entry(space, "count"), None),
        ("POST", f"/admin/api/spaces/{space}/import", b'{"entries": [{"key": "count", "value": 9}]}'),
    ]:
        for headers, refused in [
            ({}, 401),
            ({"Authorization": "Bearer nope"}, 401),
            ({"Authorization": f"Basic {TOKEN}"}, 401),
            ({"Cookie": cookie}, 403),  # no X-Admin-Request
        ]:
            headers = {"Content-Type": "application/json", **headers}
            status, body = await send(http_client, base_url, method, path, raw, headers)
            assert status == refused, (method, path, headers, body)
    assert await database_state(store) == before
    # The browser's way: cookie plus the header a cross-site form cannot send.
    status, body = await send(
        http_client,
        base_url,
        "PUT",
        entry(space, "count"),
        b"5",
        {"Content-Type": "application/json", "Cookie": cookie, "X-Admin-Request": "1"},
    )
    assert status == 200, body
    assert await api.view(space) == {"count": 5}


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_mutate_runs_a_registered_mutator_pokes_and_moves_the_version(
    settings, api, http_client, base_url, store
):
    space = await api.create_space()
    group, client = uid("g-"), uid("c-")
    assert (await api.push(space, group, [mutation(1, client, args=2)])).status == 200
    cookie = (await api.pull(space, group)).body["cookie"]
    stream = await listen(base_url, space)
    try:
        path = f"/admin/api/spaces/{space}/mutate"
        status, body, _ = await call(
            http_client, base_url, "POST", path, {"name": "setTitle", "args": {"title": "é 🎉"}}
        )
        assert status == 200 and body == {"version": cookie + 1}
        await stream.wait_for("poke")
        status, body, _ = await call(http_client, base_url, "POST", path, {"name": "increment", "args": 40})
        assert status == 200 and body == {"version": cookie + 2}
        await stream.wait_for("poke")
    finally:
        stream.close()
    # The client's next pull: only the change, and its own lmid untouched.
    pulled = await api.pull(space, group, cookie)
    assert pulled.body["cookie"] == cookie + 2 and pulled.body["lastMutationIDChanges"] == {}
    assert {op["key"]: op["value"] for op in pulled.body["patch"]} == {"title": "é 🎉", "count": 42}

    # A mutator that reads, scans, puts and deletes: all in one transaction.
    for key in ("todo/1", "todo/2"):
        status, _ = await send(
            http_client, base_url, "PUT", entry(space, key), json.dumps({"k": key}).encode()
        )
        assert status == 200
    status, body, _ = await call(
        http_client,
        base_url,
        "POST",
        f"/admin/api/spaces/{space}/mutate",
        {"name": "rename", "args": {"from": "todo/", "to": "done/"}},
    )
    assert status == 200 and body == {"version": cookie + 5}
    view = await api.view(space)
    assert {k: v for k, v in view.items() if "/" in k} == {
        "done/1": {"k": "todo/1"},
        "done/2": {"k": "todo/2"},
    }
    # Nothing changed: the version stays.
    status, body, _ = await call(
        http_client,
        base_url,
        "POST",
        f"/admin/api/spaces/{space}/mutate",
        {"name": "setTitle", "args": {"title": "é 🎉"}},
    )
    assert status == 200 and body == {"version": cookie + 5}


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_mutate_refusals_change_nothing(settings, api, http_client, base_url, store):
    space = await api.create_space()
    assert (await api.push(space, "g1", [mutation(1, "c1", args=1)])).status == 200
    path = f"/admin/api/spaces/{space}/mutate"
    before = await database_state(store)
    cases = [
        (path, b'{"name": "nope", "args": 1}', 400, "UnknownMutator"),
        (path, b'{"args": 1}', 400, "UnknownMutator"),
        (path, b'{"name": ["increment"]}', 400, "UnknownMutator"),
        (path, b'{"name": "increment", "args": "x"}', 400, "MutationFailed"),  # it raised
        (path, b'{"name": "setTitle", "args": {"title": 5}}', 400, "MutationFailed"),
        (path, b'{"name": "increment", "args": 9007199254740992}', 400, "InvalidArgs"),
        (path, b'{"name": "increment", "args": ' + b"[" * 70 + b"]" * 70 + b"}", 400, "InvalidJSON"),
        (path, b'{"name": "increment", "args": 1', 400, "InvalidJSON"),
        (path, b'{"name": "increment", "args": NaN}', 400, "InvalidJSON"),
        (path, b"[1]", 400, "InvalidRequest"),
        ("/admin/api/spaces/never-made/mutate", b'{"name": "increment", "args": 1}', 404, "SpaceNotFound"),
        ("/admin/api/spaces/bad%20id/mutate", b'{"name": "increment", "args": 1}', 400, "InvalidSpaceID"),
    ]
    for where, raw, status, error in cases:
        got, body = await send(http_client, base_url, "POST", where, raw)
        assert (got, body["error"]) == (status, error), (raw, body)
    status, body = await send(
        http_client,
        base_url,
        "POST",
        path,
        b'{"name": "increment", "args": 1}',
        {**BEARER, "Content-Type": "text/plain"},
    )
    assert status == 400 and body["error"] == "UnsupportedContentType"
    assert await database_state(store) == before


@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_put_and_delete_any_key_round_trip_exactly(settings, api, http_client, base_url, store):
    space = await api.create_space()
    stream = await listen(base_url, space)
    values = {
        "todo/1": {"title": "milk", "done": False, "tags": ["a"], "n": None},
        "ü/🎉 key with spaces?&#": [1, 2.5, -0.0, 1e300, 2**53 - 1, "\u2028"],
        "": "the empty key",
        "count": 7,
        "null": None,
    }
    try:
        version = 0  # a new space's
        for key, value in values.items():
            raw = json.dumps(value, ensure_ascii=False).encode()
            status, body = await send(http_client, base_url, "PUT", entry(space, key), raw)
            version += 1
            assert status == 200 and body == {"version": version}, (key, body)
            await stream.wait_for("poke")
        # The same value again changes nothing: no new version.
        status, body = await send(http_client, base_url, "PUT", entry(space, "count"), b"7")
        assert body == {"version": version}
        view = await api.view(space)
        assert view == values
        assert json.dumps(view["ü/🎉 key with spaces?&#"]) == json.dumps(values["ü/🎉 key with spaces?&#"])

        status, body = await send(http_client, base_url, "DELETE", entry(space, "todo/1"), None)
        assert status == 200 and body == {"version": version + 1}
        await stream.wait_for("poke")
        status, body = await send(http_client, base_url, "DELETE", entry(space, "todo/1"), None)
        assert status == 200 and body == {"version": version + 1}  # gone already: nothing moved
    finally:
        stream.close()
    assert "todo/1" not in await api.view(space)


@pytest.mark.parametrize(
    "settings", [{"admin_token": TOKEN, "max_body_bytes": 3 * MAX_VALUE_BYTES}], indirect=True
)
async def test_put_and_delete_refusals_change_nothing(settings, api, http_client, base_url, store):
    space = await api.create_space()
    assert (await api.push(space, "g1", [mutation(1, "c1", args=1)])).status == 200
    before = await database_state(store)
    too_big = json.dumps("x" * MAX_VALUE_BYTES).encode()
    cases = [
        ("PUT", entry(space, "k"), b"", 400, "MissingValue"),
        ("PUT", entry(space, "k"), b"  ", 400, "MissingValue"),
        ("PUT", entry(space, "k"), b"{", 400, "InvalidJSON"),
        ("PUT", entry(space, "k"), b"Infinity", 400, "InvalidJSON"),
        ("PUT", entry(space, "k"), b"9007199254740993", 400, "InvalidValue"),
        ("PUT", entry(space, "k"), b'"\\ud800"', 400, "InvalidJSON"),
        ("PUT", entry(space, "k"), b"[" * 65 + b"]" * 65, 400, "InvalidJSON"),
        ("PUT", entry(space, "k"), too_big, 400, "InvalidValue"),
        ("PUT", entry(space, "k" * 1025), b"1", 400, "InvalidKey"),
        ("DELETE", entry(space, "k" * 1025), None, 400, "InvalidKey"),
        ("PUT", f"/admin/api/spaces/{space}/entries/%ED%A0%80", b"1", 400, "BadRequest"),  # not UTF-8
        ("PUT", entry("never-made", "k"), b"1", 404, "SpaceNotFound"),
        ("DELETE", entry("never-made", "k"), None, 404, "SpaceNotFound"),
        ("PUT", entry("bad id", "k"), b"1", 400, "InvalidSpaceID"),
        ("PATCH", entry(space, "k"), b"1", 405, "MethodNotAllowed"),
    ]
    for method, path, raw, status, error in cases:
        got, body = await send(http_client, base_url, method, path, raw)
        assert (got, body["error"]) == (status, error), (method, path[:80], raw[:40] if raw else raw, body)
    status, body = await send(
        http_client, base_url, "PUT", entry(space, "k"), b"1", {**BEARER, "Content-Type": "text/plain"}
    )
    assert status == 400 and body["error"] == "UnsupportedContentType"
    over = b'"' + b"x" * (3 * MAX_VALUE_BYTES) + b'"'
    status, body = await send(http_client, base_url, "PUT", entry(space, "k"), over)
    assert status == 413 and body["error"] == "BodyTooLarge"
    assert await database_state(store) == before


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_seed_script_sets_any_key_over_http_with_the_admin_token(settings, api, base_url, store):
    used, new = await api.create_space(uid("used-")), uid("new-")
    assert (await api.push(used, "g1", [mutation(1, "c1", args=3)])).status == 200
    stream = await listen(base_url, used)
    sets = ["--set", 'title="Groceries é"', "--set", "todo/1=" + json.dumps({"done": False, "n": [1, 2.5]})]
    args = [SEED, "--url", base_url, "--admin-token", TOKEN, used, new, *sets]
    try:
        code, out, err = await run_script(*args)
        assert code == 0, err
        assert "2 spaces: 1 created, 1 existed, 2 seeded, 0 already seeded, 0 failed" in out
        await stream.wait_for("poke")  # written as the server: the space's listeners hear of it
    finally:
        stream.close()
    expected = {"title": "Groceries é", "todo/1": {"done": False, "n": [1, 2.5]}}
    assert await api.view(used) == {"count": 3, **expected}
    assert await api.view(new) == expected

    code, out, err = await run_script(*args)  # the same values: nothing moves
    assert code == 0, err
    assert "0 created, 2 existed, 0 seeded, 2 already seeded, 0 failed" in out
    before = await database_state(store)
    code, out, err = await run_script(SEED, "--url", base_url, "--admin-token", "wrong", used, *sets)
    assert code == 1 and "401" in err
    assert await database_state(store) == before
