"""protocol.py: pure validation and encoding."""

from __future__ import annotations

import json

import pytest

from server.protocol import (
    MAX_MUTATION_ID,
    RequestError,
    check_space_id,
    encode_pull_response,
    parse_json,
    parse_pull,
    parse_push,
    request_version,
)


def test_parse_push_keeps_order_and_fields():
    req = parse_push(
        {
            "profileID": "p1",
            "clientGroupID": "g",
            "schemaVersion": "v1",
            "mutations": [
                {"id": 2, "name": "a", "args": {"x": [1]}, "timestamp": 3.5, "clientID": "c2"},
                {"id": 1, "name": "b", "args": None, "timestamp": 4, "clientID": "c1"},
            ],
        }
    )
    assert [(m.id, m.client_id, m.args) for m in req.mutations] == [(2, "c2", {"x": [1]}), (1, "c1", None)]
    assert req.schema_version == "v1" and req.profile_id == "p1"


@pytest.mark.parametrize(
    "mutation",
    [
        {"id": 0, "name": "a", "clientID": "c"},
        {"id": MAX_MUTATION_ID + 1, "name": "a", "clientID": "c"},
        {"id": 1.5, "name": "a", "clientID": "c"},
        {"id": True, "name": "a", "clientID": "c"},
        {"id": 1, "name": "", "clientID": "c"},
        {"id": 1, "name": "a" * 129, "clientID": "c"},
        {"id": 1, "name": "a", "clientID": "c" * 129},
        {"id": 1, "name": "a"},
        "not an object",
    ],
)
def test_parse_push_rejects(mutation):
    with pytest.raises(RequestError) as e:
        parse_push({"clientGroupID": "g", "mutations": [mutation]})
    assert e.value.status == 400 and "mutations[0]" in e.value.message


def test_parse_push_exits_early_past_max_clients():
    muts = [{"id": 1, "name": "a", "clientID": f"c{i % 4}"} for i in range(8)]
    req = parse_push({"clientGroupID": "g", "mutations": muts}, max_clients=3)
    assert [m.client_id for m in req.mutations] == ["c0", "c1", "c2"]  # stops at the 4th client


def test_parse_push_marks_args_out_of_limits():
    muts = [{"id": 1, "name": "a", "clientID": "c", "args": 2**53}, {"id": 2, "name": "a", "clientID": "c"}]
    first, second = parse_push({"clientGroupID": "g", "mutations": muts}).mutations
    assert first.problem and "2**53" in first.problem and second.problem is None


def test_parse_pull_cookie():
    assert parse_pull({"clientGroupID": "g", "cookie": None}).cookie is None
    assert parse_pull({"clientGroupID": "g", "cookie": 7}).cookie == 7
    assert parse_pull({"clientGroupID": "g", "cookie": 7.0}).cookie == 7
    for foreign in ["7", {"order": 1}, -1, 1.5, True, 2**53]:
        pull = parse_pull({"clientGroupID": "g", "cookie": foreign})
        assert pull.foreign_cookie and pull.cookie is None


def test_request_version():
    assert request_version({"pushVersion": 1}, "pushVersion") == 1
    with pytest.raises(RequestError):
        request_version({}, "pushVersion")


def test_space_ids():
    assert check_space_id("a-B_9") == "a-B_9"
    for bad in ["", "a/b", "a" * 65, None, "é"]:
        with pytest.raises(RequestError):
            check_space_id(bad)


def test_parse_json_is_strict():
    assert parse_json(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}
    assert parse_json(b"123456789012345678901234567890") == 123456789012345678901234567890
    for bad in [b"{", b"NaN", b"[Infinity]", b"1e400", b"\xc3\x28", b"[" * 65 + b"]" * 65]:
        with pytest.raises(RequestError):
            parse_json(bad)


def test_encode_pull_response_splices_stored_values():
    body = encode_pull_response(5, {"c": 3}, [("clear",), ("put", 'k"é', '{"$x":[1,2]}'), ("del", "gone")])
    assert json.loads(body) == {
        "cookie": 5,
        "lastMutationIDChanges": {"c": 3},
        "patch": [
            {"op": "clear"},
            {"op": "put", "key": 'k"é', "value": {"$x": [1, 2]}},
            {"op": "del", "key": "gone"},
        ],
    }
