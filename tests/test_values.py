"""Any JSON value round-trips exactly; keys sort by UTF-8 bytes."""

from __future__ import annotations

import json

import pytest

from tests.helpers import mutation

pytestmark = pytest.mark.gen_test

ODD_VALUES = [
    {"$set": {"a.b": 1}, "$where": "x", ".": ["$"]},
    2**53 - 1,
    -(2**53) + 1,
    1.2345678901234568e30,
    0.1,
    1e300,
    -0.0,
    'unicode ✓ 𝄞 \u0000 "quoted"',
    [None, True, False, [], {}],
    {"deep": [[[[{"x": "y"}]]]]},
]


async def put_mutator(tx, kv):
    await tx.put(kv[0], kv[1])


@pytest.mark.parametrize("value", ODD_VALUES, ids=range(len(ODD_VALUES)))
async def test_value_round_trips(api, store, value):
    store.mutators = {**store.mutators, "put": put_mutator}
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c", "put", ["k", value])])
    r = await api.pull(space, "g1")
    raw = r.body["patch"][0]["value"]
    assert json.dumps(raw, sort_keys=True) == json.dumps(value, sort_keys=True)
    assert type(raw) is type(value)


async def test_scan_orders_keys_by_utf8(api, store):
    keys = ["b", "a", "é", "\U0001f600", "aa", "A", "\uffff"]
    order = []

    async def scan(tx, prefix):
        order.extend(k for k, _ in await tx.scan(prefix))

    store.mutators = {**store.mutators, "put": put_mutator, "scan": scan}
    space = await api.create_space()
    muts = [mutation(i + 1, "c", "put", [k, i]) for i, k in enumerate(keys)]
    await api.push(space, "g1", muts[:4])
    # Half the keys committed, half written in the same push as the scan.
    await api.push(space, "g1", [*muts[4:], mutation(len(keys) + 1, "c", "scan", "")])
    assert order == sorted(keys, key=lambda k: k.encode())
    order.clear()
    await api.push(space, "g1", [mutation(len(keys) + 2, "c", "scan", "a")])
    assert order == ["a", "aa"]


@pytest.mark.parametrize("value", [2**53, -(2**70), {"a": [2**64]}])
async def test_unsafe_integers_fail_the_mutation(api, store, value):  # issue 11.4
    """A JavaScript client would read them as imprecise doubles and then disagree with us."""
    store.mutators = {**store.mutators, "put": put_mutator}
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c", "put", ["k", value]), mutation(2, "c", "put", ["j", 1])])
    r = await api.pull(space, "g1")
    assert r.body["lastMutationIDChanges"] == {"c": 2}
    assert await api.view(space) == {"j": 1}


async def test_increment_stays_within_safe_integers(api):  # issue 11.4
    space = await api.create_space()
    half = 2**52
    muts = [mutation(1, "c", args=half), mutation(2, "c", args=half), mutation(3, "c", args=half - 1)]
    await api.push(space, "g1", muts)  # the second would make 2**53: it fails alone
    assert await api.view(space) == {"count": 2**53 - 1}
    await api.push(space, "g1", [mutation(4, "c", args=1), mutation(5, "c", args=-5)])
    assert await api.view(space) == {"count": 2**53 - 6}
    assert (await api.pull(space, "g1")).body["lastMutationIDChanges"] == {"c": 5}
