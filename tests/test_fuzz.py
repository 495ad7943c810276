"""Property-based: >= 10,000 push/pull bodies, valid and invalid, against the running app.

Never a 5xx; a rejected request changes nothing in the database (every collection,
every document); the spaces still pull consistently (a full pull equals the previous state
plus the incremental patch; cookies never go down); and each space's count and each
group's lmids equal what a reference model of the protocol computes from the pushes the
server accepted.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Api
from tests.snapshot import differences, snapshot

BODIES = 10_000
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 250))
PER_EXAMPLE = 40
SPACES = ["fz-a", "fz-b"]
GROUPS = ["a0", "a1", "a2", "b0", "b1", "b2"]  # bound to fz-a and fz-b before the fuzzing
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


def group_pushes(group: str) -> st.SearchStrategy[dict[str, Any]]:
    """Pushes of one group: mostly its own clients, sometimes another group's."""
    own = [f"{group}-{c}" for c in CLIENTS]
    others = [f"{g}-{c}" for g in GROUPS for c in CLIENTS]
    mutations = st.fixed_dictionaries(
        {
            # Relative to the client's lmid, filled in when sent (see Model.resolve): a
            # random absolute id would almost never be the next one, and nothing would apply.
            "id": st.sampled_from(["rel:0", "rel:1", "rel:1", "rel:1", "rel:2"]),
            "name": st.sampled_from(["increment", "increment", "increment", "nope"]),
            "args": st.integers(min_value=-5, max_value=5) | json_values,
            "timestamp": st.floats(min_value=0, max_value=1e6),
            "clientID": st.sampled_from(own * 10 + others),
        }
    )
    return st.fixed_dictionaries(
        {
            "profileID": st.just("p"),
            "clientGroupID": st.just(group),
            "mutations": st.lists(mutations, max_size=4),
            "pushVersion": st.just(1),
            "schemaVersion": st.just(""),
        }
    )


pushes = st.sampled_from(GROUPS).flatmap(group_pushes)
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


MAX_SAFE = 2**53 - 1  # past it a JavaScript client cannot hold a number exactly: the mutation fails


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) <= MAX_SAFE


@dataclass
class Model:
    """The protocol as README "Protocol notes" states it, applied to the requests the
    server accepted: which group is bound to which space, each client's lmid (a client id
    is per group), and each space's count."""

    group_space: dict[str, str] = field(default_factory=dict)
    lmids: dict[tuple[str, str], int] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    applied: int = 0  # mutations applied (lmid advanced), failed or not

    def bind(self, space: str, group: str) -> None:
        bound = self.group_space.setdefault(group, space)
        assert bound == space, f"the server let group {group!r} of {bound!r} into {space!r}"

    def accepted_push(self, space: str, body: dict[str, Any]) -> None:
        group = body["clientGroupID"]
        self.bind(space, group)
        first: dict[str, int] = {}
        for m in body["mutations"]:
            first.setdefault(m["clientID"], m["id"])
        for cid, n in first.items():  # else the server must have answered ClientStateNotFound
            assert n <= self.lmids.get((group, cid), 0) + 1, f"accepted {cid!r} starting at {n}"
        stopped: set[str] = set()
        for m in body["mutations"]:
            key = (group, m["clientID"])
            last = self.lmids.get(key, 0)
            if key in stopped or m["id"] <= last:
                continue
            if m["id"] > last + 1:  # a gap inside the push: nothing of this client past it
                stopped.add(key)
                continue
            self.lmids[key] = m["id"]
            self.applied += 1
            self.increment(space, m["name"], m.get("args"))  # args may be left out

    def increment(self, space: str, name: str, delta: Any) -> None:
        """server/mutators.py's increment; a failed one changes nothing but its lmid."""
        prev = self.counts.get(space)
        if name != "increment" or not _is_number(delta):
            return
        if prev is not None and not _is_number(prev):
            return
        new = (prev or 0) + delta
        if not _is_number(new) or isinstance(new, float) and not math.isfinite(new):
            return  # out of range, or not storable as JSON: the mutation fails
        self.counts[space] = new

    def resolve(self, raw: bytes) -> bytes:
        """Turn the relative ids "rel:N" of a push body into lmid + N: N=0 resends the
        last applied id, 1 is the next, 2 leaves a gap. Mutations of one client in one
        push count on from each other. Bodies without such ids are sent as they are."""
        try:
            body = json.loads(raw)
        except ValueError:
            return raw
        if not isinstance(body, dict) or not isinstance(body.get("mutations"), list):
            return raw
        running: dict[Any, int] = {}
        changed = False
        for m in body["mutations"]:
            if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"].startswith("rel:"):
                cid = m.get("clientID")
                key = cid if isinstance(cid, str) else None
                group = body.get("clientGroupID")
                known = self.lmids.get((group, key), 0) if key and isinstance(group, str) else 0
                last = running.get(key, known)
                m["id"] = last + int(m["id"][4:])
                running[key] = max(last, m["id"])
                changed = True
        return encode(body) if changed else raw

    def view(self, space: str) -> dict[str, Any]:
        return {"count": self.counts[space]} if space in self.counts else {}

    def group_lmids(self, group: str) -> dict[str, int]:
        return {c: n for (g, c), n in self.lmids.items() if g == group}


def test_fuzz_push_and_pull(io_loop, http_client, http_port, mongo_client, db_name):
    api = Api(http_client, f"http://127.0.0.1:{http_port}")  # no name lookup per request
    for space in SPACES:
        io_loop.run_sync(lambda space=space: api.create_space(space))
    model = Model()
    for group in GROUPS:  # a group's first pull binds it: a* to fz-a, b* to fz-b
        space = SPACES[group[0] == "b"]
        assert io_loop.run_sync(lambda group=group, space=space: api.pull(space, group)).status == 200
        model.bind(space, group)
    sent = [0]
    known: dict[str, tuple[int, dict[str, Any]]] = {s: (0, {}) for s in SPACES}

    async def check_consistent(space: str) -> None:
        cookie, view = known[space]
        full = (await api.pull(space, f"viewer-{space}")).body  # cookie null: everything
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
        assert view == model.view(space)
        known[space] = (full["cookie"], view)
        # Groups the requests bound (a pull here would bind the others to this space).
        for group in [g for g in GROUPS if g in model.group_space]:
            r = await api.pull(space, group)
            if model.group_space[group] != space:  # another space's group starts over
                assert (r.status, r.body) == (200, {"error": "ClientStateNotFound"}), r.body
                continue
            assert r.status == 200 and "error" not in r.body, r.body
            assert r.body["lastMutationIDChanges"] == model.group_lmids(group)

    def accepted(path: str, space: str, raw: bytes) -> None:
        body = json.loads(raw)
        if path == "pull":
            model.bind(space, body["clientGroupID"])
        else:
            model.accepted_push(space, body)

    async def run(batch: list[tuple[str, str, bytes, str]]) -> None:
        before = await snapshot(mongo_client, db_name)
        for path, space, raw, content_type in batch:
            raw = model.resolve(raw)
            url = f"/api/replicache/{path}?spaceID={quote(space)}"
            r = await api.post(url, raw, {"Content-Type": content_type})
            sent[0] += 1
            assert r.status < 500, (r.status, r.body, raw)
            assert isinstance(r.body, dict)
            after = await snapshot(mongo_client, db_name)
            if r.status != 200 or "error" in r.body:
                assert after == before, (r.status, r.body, raw, differences(before, after))
            else:
                accepted(path, space, raw)
            before = after
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
    # The model saw real work: mutations applied in both spaces.
    print(f"model: {model.applied} mutations applied, counts {model.counts}, {len(model.lmids)} clients")
    assert set(model.counts) == set(SPACES) and model.applied >= 20, model
