"""The store works with a Motor client too (Motor reached end of life; apps still use it)."""

from __future__ import annotations

import json

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from server.protocol import parse_pull, parse_push
from server.store import Store
from tests.helpers import mutation

pytestmark = pytest.mark.gen_test


async def test_store_with_motor(mongo_uri, db_name):
    client = AsyncIOMotorClient(mongo_uri)
    try:
        store = Store(client, db_name)
        await store.init()
        space = await store.create_space()
        push = {"clientGroupID": "g1", "mutations": [mutation(1, "c1", args=2), mutation(2, "c1", args=3)]}
        assert await store.push(space, parse_push(push)) == {}
        body = json.loads(await store.pull(space, parse_pull({"clientGroupID": "g1", "cookie": None})))
        assert body == {
            "cookie": 1,
            "lastMutationIDChanges": {"c1": 2},
            "patch": [{"op": "put", "key": "count", "value": 5}],
        }
    finally:
        client.close()
