"""Spaces, errors and CORS: checklist items 36-38 and the JSON error contract."""

from __future__ import annotations

import re

import pytest

from tests.helpers import database_state

pytestmark = pytest.mark.gen_test


async def test_create_space_random_and_named(api):  # 36
    r = await api.post("/api/replicache/createSpace", {})
    new = r.body["spaceID"]
    assert r.status == 200 and re.fullmatch(r"[A-Za-z0-9_-]{8,64}", new)
    pulled = await api.pull(new, "g1")
    assert pulled.body == {"cookie": 0, "lastMutationIDChanges": {}, "patch": []}
    assert await api.create_space("my-space_1") == "my-space_1"
    r = await api.post("/api/replicache/createSpace", {"spaceID": "my-space_1"})
    assert r.status == 409 and r.body["error"] == "SpaceExists"


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "ü", 7, None])
async def test_invalid_space_ids(api, bad):
    r = await api.post("/api/replicache/createSpace", {"spaceID": bad})
    if bad is None:
        assert r.status == 200  # null means "make one up"
        return
    assert r.status == 400 and r.body["error"] == "InvalidSpaceID"
    r = await api.post("/api/replicache/spaceExists", {"spaceID": bad})
    assert r.status == 400


async def test_space_exists(api):  # 37
    space = await api.create_space()
    r = await api.post("/api/replicache/spaceExists", {"spaceID": space})
    assert r.body == {"spaceExists": True}
    r = await api.post("/api/replicache/spaceExists", {"spaceID": "never-made"})
    assert r.body == {"spaceExists": False}


@pytest.mark.parametrize("path", ["push", "pull", "poke", "createSpace", "spaceExists"])
async def test_cors_preflight(http_client, base_url, path):  # 38
    r = await http_client.fetch(
        f"{base_url}/api/replicache/{path}?spaceID=x",
        method="OPTIONS",
        raise_error=False,
        headers={
            "Origin": "http://elsewhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization,x-replicache-requestid",
        },
    )
    assert 200 <= r.code < 300
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "authorization", "x-replicache-requestid"} <= allowed
    assert r.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("settings", [{"cors_origins": "http://good.example"}], indirect=True)
async def test_cors_origin_list(http_client, base_url, settings):
    async def origin_header(origin):
        r = await http_client.fetch(
            f"{base_url}/api/replicache/push", method="OPTIONS", headers={"Origin": origin}, raise_error=False
        )
        return r.headers.get("Access-Control-Allow-Origin")

    assert await origin_header("http://good.example") == "http://good.example"
    assert await origin_header("http://evil.example") is None


@pytest.mark.parametrize(
    "body,headers,error",
    [
        (b"{not json", {}, "InvalidJSON"),
        (b"\xff\xfe", {}, "InvalidJSON"),
        (b'{"a": NaN}', {}, "InvalidJSON"),
        (b'{"a": 1e999}', {}, "InvalidJSON"),
        (b"[" * 100 + b"]" * 100, {}, "InvalidJSON"),
        (b'{"clientGroupID": "g"}', {"Content-Type": "text/plain"}, "UnsupportedContentType"),
        (b"[]", {}, "InvalidRequest"),
        (b'{"pushVersion": 1, "clientGroupID": 5, "mutations": []}', {}, "InvalidRequest"),
        (
            b'{"pushVersion": 1, "clientGroupID": "g", "mutations": '
            b'[{"id": 0, "name": "x", "clientID": "c"}]}',
            {},
            "InvalidRequest",
        ),
        (
            b'{"pushVersion": 1, "clientGroupID": "g", "mutations": [{"id": 1, "name": "x", "clientID": "c",'
            b' "timestamp": "now"}]}',
            {},
            "InvalidRequest",
        ),
        (b'{"pushVersion": "1", "clientGroupID": "g", "mutations": []}', {}, "InvalidRequest"),
    ],
)
async def test_bad_push_bodies(api, store, body, headers, error):
    space = await api.create_space()
    before = await database_state(store)
    r = await api.post(f"/api/replicache/push?spaceID={space}", body, headers)
    assert r.status == 400, r.body
    assert r.body["error"] == error and r.body["message"]
    assert await database_state(store) == before


async def test_unknown_route_and_method_are_json(api, http_client, base_url):
    r = await api.post("/api/replicache/nothing", {})
    assert r.status == 404 and r.body["error"] == "NotFound"
    r = await http_client.fetch(f"{base_url}/api/replicache/push", raise_error=False)
    assert r.code == 405 and r.headers["Content-Type"].startswith("application/json")
