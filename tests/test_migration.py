"""A database written by the previous storage schema (1) is migrated at start, idempotently;
one written by a newer schema is refused with one clear line (issue 12.5).

tests/fixtures/schema1.json was made by the server at commit 263688c (see make_schema1.py
beside it): spaces alpha (count 7, a key with $ and ., a deleted key), beta (count 8, and a
collected client group "old"), empty; groups ga (clients ca1 at 4, ca2 at 1), gb, reader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bson import json_util

from server.protocol import parse_pull, parse_push
from server.store import SchemaTooNew, Store
from server.store.migrate import V1
from server.testing import ROOT
from tests.helpers import database_state, mutation

pytestmark = pytest.mark.gen_test

FIXTURE = Path(__file__).parent / "fixtures" / "schema1.json"
CSNF = {"error": "ClientStateNotFound"}


async def load_schema1(client, db_name: str) -> None:
    for name, docs in json_util.loads(FIXTURE.read_text()).items():
        await client[db_name][name].insert_many(docs)


async def pull(store: Store, space: str, group: str, cookie=None) -> dict:
    return json.loads(await store.pull(space, parse_pull({"clientGroupID": group, "cookie": cookie})))


async def test_a_schema_1_database_is_migrated(mongo_client, db_name, caplog):
    await load_schema1(mongo_client, db_name)
    store = Store(mongo_client, db_name)
    with caplog.at_level("WARNING", logger="server.store.migrate"):
        await store.init()
    assert "migrating database" in caplog.text and "migration: 14 of 14 documents" in caplog.text
    assert not set(await mongo_client[db_name].list_collection_names()) & set(V1)

    # Everything reads as before: data, lmids, cookies (an old cookie is still current).
    full = await pull(store, "alpha", "ga")
    assert full["cookie"] == 3 and full["lastMutationIDChanges"] == {"ca1": 4, "ca2": 1}
    assert {op["key"]: op["value"] for op in full["patch"]} == {
        "count": 7,
        "$odd.key": {"$set": [1, 2.5, "ü"]},
    }
    assert await pull(store, "alpha", "ga", 3) == {"cookie": 3, "lastMutationIDChanges": {}, "patch": []}
    since2 = await pull(store, "alpha", "ga", 2)
    assert since2["patch"] == [{"op": "del", "key": "gone"}] and since2["lastMutationIDChanges"] == {"ca1": 4}
    assert (await pull(store, "alpha", "reader"))["cookie"] == 3  # a group bound by a pull
    assert await pull(store, "beta", "reader") == CSNF  # ...to alpha, not beta
    assert await pull(store, "beta", "old") == CSNF  # collected before the migration
    assert await store.space_version("empty") == 0
    assert (await store.admin.list_spaces("", None, 10))["total"] == 3
    # And goes on: lmids, versions.
    request = parse_push({"clientGroupID": "ga", "mutations": [mutation(5, "ca1"), mutation(2, "ca2")]})
    assert await store.push("alpha", request) == {}
    after = await pull(store, "alpha", "ga", 3)
    assert after["cookie"] == 4 and after["lastMutationIDChanges"] == {"ca1": 5, "ca2": 2}

    before = await database_state(store)
    await Store(mongo_client, db_name).init()  # again: nothing to do
    assert await database_state(store) == before


async def test_a_migration_cut_short_runs_again(mongo_client, db_name):
    await load_schema1(mongo_client, db_name)
    store = Store(mongo_client, db_name)
    await store.init()
    migrated = await database_state(store)
    # As if it stopped after copying everything but before it wrote the schema version.
    await mongo_client[db_name].meta.delete_one({"_id": "schema"})
    await load_schema1(mongo_client, db_name)
    await Store(mongo_client, db_name).init()
    assert await database_state(store) == migrated


async def test_a_newer_schema_is_refused(mongo_client, mongo_uri, db_name):
    await Store(mongo_client, db_name).init()
    await mongo_client[db_name].meta.update_one({"_id": "schema"}, {"$set": {"version": 99}})
    with pytest.raises(SchemaTooNew, match="schema version 99"):
        await Store(mongo_client, db_name).init()
    done = subprocess.run(
        [sys.executable, "-m", "server", "--mongodb-uri", mongo_uri, "--db-name", db_name, "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "has schema version 99" in done.stderr.strip().splitlines()[-1]
