"""Bad input: every field checked, 400 JSON naming the field, nothing stored; 413 for big bodies."""

from __future__ import annotations

import json
import re

import pytest
from tornado.tcpclient import TCPClient

from server import testing
from server.testing import LiveServer
from tests.helpers import database_state, mutation

pytestmark = pytest.mark.gen_test

LONG = "x" * 129
OK_LONG = "y" * 128


def push_body(**change):
    """A valid push with `change` made to its fields."""
    return testing.push_body("g1", [mutation(1, "c1")], **change)


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "body,field",
    [
        (push_body(clientGroupID=LONG), "clientGroupID"),
        (push_body(clientGroupID=""), "clientGroupID"),
        (push_body(profileID=LONG), "profileID"),
        (push_body(profileID=7), "profileID"),
        (push_body(schemaVersion=LONG), "schemaVersion"),
        (push_body(mutations=[mutation(1, LONG)]), "clientID"),
        (push_body(mutations=[mutation(1, "c1", name=LONG)]), "name"),
        (push_body(mutations=[mutation(1, "c1", name="")]), "name"),
        (push_body(mutations=[mutation(2**53, "c1")]), "mutations[0].id"),
        (push_body(mutations=[mutation(-1, "c1")]), "mutations[0].id"),
        (push_body(mutations=[mutation(1.5, "c1")]), "mutations[0].id"),
        (push_body(mutations=[mutation(True, "c1")]), "mutations[0].id"),
        (push_body(mutations=[{**mutation(1, "c1"), "timestamp": 10**400}]), "timestamp"),
        (push_body(mutations=[mutation(1, "c1"), "x"]), "mutations[1]"),
        (push_body(mutations={"0": mutation(1, "c1")}), "mutations"),
        (push_body(mutations=[{**mutation(1, "c1"), "clientID": "\ud800"}]), "surrogate"),
    ],
)
async def test_bad_push_fields(api, store, body, field):
    space = await api.create_space()
    before = await database_state(store)
    r = await api.post(f"/api/replicache/push?spaceID={space}", body)
    assert r.status == 400, r.body
    assert field in r.body["message"] and r.body["error"]
    assert await database_state(store) == before


@pytest.mark.parametrize(
    "args",
    [
        nested(70),  # deeper than 64
        {"k": json.loads('"\\ud800"')},  # a lone surrogate: valid JSON, not storable
        {json.loads('"\\udc00"'): 1},  # in a key too
        2**53,  # JavaScript would read it as an imprecise double
        [-(2**60)],
        "x" * (1 << 20),  # more than a megabyte
    ],
)
async def test_args_out_of_limits_fail_that_mutation_alone(api, args):  # issue 11.4
    space = await api.create_space()
    r = await api.push(
        space, "g1", [mutation(1, "c1", args=5), mutation(2, "c1", args=args), mutation(3, "c1", args=7)]
    )
    assert (r.status, r.body) == (200, {})
    assert (await api.pull(space, "g1")).body["lastMutationIDChanges"] == {"c1": 3}
    assert await api.view(space) == {"count": 12}


@pytest.mark.parametrize(
    "change,field",
    [
        ({"clientGroupID": LONG}, "clientGroupID"),
        ({"clientGroupID": None}, "clientGroupID"),
        ({"profileID": LONG}, "profileID"),
    ],
)
async def test_bad_pull_fields(api, store, change, field):
    space = await api.create_space()
    before = await database_state(store)
    r = await api.pull(space, "g1", **change)
    assert r.status == 400, r.body
    assert field in r.body["message"]
    assert await database_state(store) == before


async def test_limits_at_the_edge_are_accepted(api):
    space = await api.create_space()
    r = await api.push(space, OK_LONG, [mutation(i, OK_LONG, name=OK_LONG) for i in range(1, 1001)])
    assert r.status == 200 and r.body == {}
    r = await api.pull(space, OK_LONG)
    assert r.body["lastMutationIDChanges"] == {OK_LONG: 1000}  # unknown mutator: lmid still advances
    r = await api.push(space, "g2", [mutation(2**53 - 1, "new")])
    assert r.status == 200 and r.body == {"error": "ClientStateNotFound"}  # valid id, unknown client


@pytest.mark.parametrize("settings", [{"max_mutations": 3}], indirect=True)
async def test_long_offline_queue_exits_early(api, settings):  # issue 11.3
    """The real client sends every pending mutation in each push, with no cap: the first
    max_mutations apply, and the rest come again in its next push."""
    space = await api.create_space()
    queue = [mutation(i, "c1") for i in range(1, 8)]
    for applied in (3, 6, 7):
        r = await api.push(space, "g1", queue)
        assert (r.status, r.body) == (200, {})
        assert (await api.pull(space, "g1")).body["lastMutationIDChanges"] == {"c1": applied}
    assert await api.view(space) == {"count": 7}


async def test_1001_mutations_exit_early_by_default(api):
    space = await api.create_space()
    r = await api.push(space, "g1", [mutation(i, "c1") for i in range(1, 1002)])
    assert (r.status, r.body) == (200, {})
    assert (await api.pull(space, "g1")).body["lastMutationIDChanges"] == {"c1": 1000}


async def test_distinct_clients_per_push_exit_early(api):  # issue 18.8
    space = await api.create_space()
    many = [mutation(1, f"c{i}", "nope") for i in range(150)]
    r = await api.push(space, "g1", many)
    assert (r.status, r.body) == (200, {})
    assert len((await api.pull(space, "g1")).body["lastMutationIDChanges"]) == 100


@pytest.mark.parametrize(
    "raw,headers,error",
    [
        (b'{"a": "\\ud800"}', {}, "InvalidJSON"),  # lone surrogate: valid JSON, not storable
        (b'{"a": "caf\xe9"}', {}, "InvalidJSON"),  # Latin-1, not UTF-8
        (b'{"a": 1', {}, "InvalidJSON"),
        (b"{}", {"Content-Type": "application/x-www-form-urlencoded"}, "UnsupportedContentType"),
        (b"{}", {"Content-Type": ""}, "UnsupportedContentType"),
    ],
)
@pytest.mark.parametrize("path", ["push", "pull", "createSpace", "spaceExists"])
async def test_bad_bytes_and_content_types(api, store, path, raw, headers, error):
    space = await api.create_space()
    before = await database_state(store)
    r = await api.post(f"/api/replicache/{path}?spaceID={space}", raw, headers)
    assert r.status == 400 and r.body["error"] == error, r.body
    assert await database_state(store) == before


async def test_surrogate_pair_escape_is_fine(api):
    space = await api.create_space()
    args = json.loads('"\\ud83d\\ude00"')  # an emoji, escaped as a pair
    r = await api.push(space, "g1", [mutation(1, "c1", "record", args)])
    assert r.status == 200


LIMITED = {"max_body_bytes": 1000}


@pytest.mark.parametrize("settings", [LIMITED], indirect=True)
async def test_body_over_limit_is_413_json(api, store, settings):
    space = await api.create_space()
    big = push_body(mutations=[mutation(1, "c1", args=1)], profileID="p", pad="z" * 1000)
    before = await database_state(store)
    r = await api.post(f"/api/replicache/push?spaceID={space}", big)
    assert r.status == 413 and r.body["error"] == "BodyTooLarge"
    assert await database_state(store) == before
    r = await api.push(space, "g1", [mutation(1, "c1")])  # the same client under the limit
    assert r.status == 200


async def raw_request(port: int, data: bytes) -> bytes:
    """Sends data (a request that never completes its body); returns the answer."""
    stream = await TCPClient().connect("127.0.0.1", port)
    try:
        await stream.write(data)
        start = await stream.read_until(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", start).group(1))
        return start + await stream.read_bytes(length)
    finally:
        stream.close()


@pytest.mark.parametrize("settings", [LIMITED], indirect=True)
async def test_declared_length_over_limit_answered_before_the_body(api, http_port, settings):
    space = await api.create_space()
    # Declares 10 GB but sends nothing: the answer must come from the headers alone.
    head = (
        f"POST /api/replicache/push?spaceID={space} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
    ).encode()
    answer = await raw_request(http_port, head)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"] == "BodyTooLarge"


async def test_live_server_answers_413_for_declared_and_chunked_bodies(mongo_uri, db_name):
    # The real process: its HTTPServer caps bodies too, which must not preempt the JSON 413.
    with LiveServer("--max-body-bytes", "1000", "--db-name", db_name, mongodb_uri=mongo_uri) as server:
        port = server.port
        declared = (
            b"POST /api/replicache/push?spaceID=s HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
        )
        chunked = (
            b"POST /api/replicache/pull?spaceID=s HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # Neither body is complete: the answer must not wait for the rest.
        chunked += (b"200\r\n" + b" " * 0x200 + b"\r\n") * 3
        for request in [declared, chunked]:
            answer = await raw_request(port, request)
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "BodyTooLarge"
