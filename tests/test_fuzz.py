"""Property-based: >= 10,000 push/pull bodies, valid and invalid, against the running app.

Never a 5xx; a rejected request changes nothing; the spaces still pull consistently
(a full pull equals the previous state plus the incremental patch; cookies and lmids
never go down).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Api, Writes

BODIES = 10_000
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 250))
PER_EXAMPLE = 40
SPACES = ["fz-a", "fz-b"]
GROUPS = ["g0", "g1", "g2"]
CLIENTS = ["c0", "c1", "c2", "c3"]
BODY_KEYS = [
    "profileID",
    "clientGroupID",
    "mutations",
    "pushVersion",
    "pullVersion",
    "cookie",
    "schemaVersion",
]
MUTATION_KEYS = ["id", "name", "args", "timestamp", "clientID"]

leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
junk = json_values | st.text(min_size=120, max_size=140) | st.just(None)

mutations = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=1, max_value=8),
        "name": st.sampled_from(["increment", "increment", "increment", "nope"]),
        "args": st.integers(min_value=-5, max_value=5) | json_values,
        "timestamp": st.floats(min_value=0, max_value=1e6),
        "clientID": st.sampled_from(CLIENTS),
    }
)
pushes = st.fixed_dictionaries(
    {
        "profileID": st.just("p"),
        "clientGroupID": st.sampled_from(GROUPS),
        "mutations": st.lists(mutations, max_size=4),
        "pushVersion": st.just(1),
        "schemaVersion": st.just(""),
    }
)
pulls = st.fixed_dictionaries(
    {
        "profileID": st.just("p"),
        "clientGroupID": st.sampled_from(GROUPS),
        "cookie": st.none() | st.integers(min_value=0, max_value=60),
        "pullVersion": st.just(1),
        "schemaVersion": st.just(""),
    }
)


def _replace(body: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = dict(body)
    if value is _DROP:
        changed.pop(key, None)
    else:
        changed[key] = value
    return changed


_DROP = object()
field_junk = junk | st.just(_DROP)


def corrupted(bodies: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    top = st.builds(_replace, bodies, st.sampled_from(BODY_KEYS), field_junk)

    def in_mutation(body: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
        if not body.get("mutations"):
            return body
        first = _replace(body["mutations"][0], key, value)
        return {**body, "mutations": [first, *body["mutations"][1:]]}

    nested = st.builds(in_mutation, bodies, st.sampled_from(MUTATION_KEYS), field_junk)
    return top | nested


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


requests = st.tuples(
    st.sampled_from(["push", "pull"]),
    st.sampled_from([*SPACES, *SPACES, "fz-missing", "bad space!"]),
    st.one_of(
        pushes.map(encode),
        pushes.map(encode),
        pulls.map(encode),
        corrupted(pushes).map(encode),
        corrupted(pulls).map(encode),
        json_values.map(encode),
        st.binary(max_size=40),
        pushes.map(lambda b: encode(b)[:-3]),  # cut short
    ),
    st.sampled_from(["application/json"] * 8 + ["text/plain", ""]),
)


def test_fuzz_push_and_pull(io_loop, http_client, http_port, store):
    api = Api(http_client, f"http://127.0.0.1:{http_port}")  # no name lookup per request
    for space in SPACES:
        io_loop.run_sync(lambda space=space: api.create_space(space))
    sent = [0]
    known: dict[str, tuple[int, dict[str, Any]]] = {s: (0, {}) for s in SPACES}
    lmids: dict[tuple[str, str], dict[str, int]] = {}

    async def check_consistent(space: str) -> None:
        cookie, view = known[space]
        full = (await api.pull(space, f"fresh-{space}-{sent[0]}")).body
        assert full["cookie"] >= cookie
        step = (await api.pull(space, f"checker-{space}", cookie)).body
        assert step["cookie"] == full["cookie"]
        view = dict(view)
        for op in step["patch"]:
            if op["op"] == "clear":
                view.clear()
            elif op["op"] == "put":
                view[op["key"]] = op["value"]
            else:
                view.pop(op["key"], None)
        assert view == {op["key"]: op["value"] for op in full["patch"] if op["op"] == "put"}
        known[space] = (full["cookie"], view)
        for group in GROUPS:
            r = await api.pull(space, group)
            if r.status == 200 and "lastMutationIDChanges" in r.body:
                before = lmids.get((space, group), {})
                now = r.body["lastMutationIDChanges"]
                assert all(now.get(c, 0) >= n for c, n in before.items()), (before, now)
                lmids[(space, group)] = now

    async def run(batch: list[tuple[str, str, bytes, str]]) -> None:
        writes = await Writes(store.db.db).open()
        try:
            for path, space, raw, content_type in batch:
                url = f"/api/replicache/{path}?spaceID={quote(space)}"
                r = await api.post(url, raw, {"Content-Type": content_type})
                sent[0] += 1
                assert r.status < 500, (r.status, r.body, raw)
                assert isinstance(r.body, dict)
                changes = await writes.written()
                if r.status != 200 or "error" in r.body:  # refused: nothing at all was written
                    assert changes == [], (r.status, r.body, raw, changes)
        finally:
            await writes.close()
        for space in SPACES:
            await check_consistent(space)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(requests, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def fuzz(batch: list[tuple[str, str, bytes, str]]) -> None:
        io_loop.run_sync(lambda: run(batch), timeout=120)

    fuzz()
    assert sent[0] >= min(BODIES, EXAMPLES * PER_EXAMPLE)
