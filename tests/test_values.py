"""Any JSON value round-trips exactly; keys sort by UTF-8 bytes."""

from __future__ import annotations

import json

import pytest

from tests.helpers import mutation

pytestmark = pytest.mark.gen_test

ODD_VALUES = [
    {"$set": {"a.b": 1}, "$where": "x", ".": ["$"]},
    2**70,
    -(2**64) - 1,
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


async def test_increment_keeps_big_integers_exact(api):
    space = await api.create_space()
    await api.push(space, "g1", [mutation(1, "c", args=2**63), mutation(2, "c", args=2**63)])
    assert await api.view(space) == {"count": 2**64}
