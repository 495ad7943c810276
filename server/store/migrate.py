"""Databases written by schema version 1 (four collections: spaces, client_groups, clients,
entries), migrated at start to version 2 (schema.py).

Idempotent: every document is written with an upsert on its address, so a migration that
was interrupted simply runs again. The old collections are dropped only after everything
was copied; the caller records the new schema version after that.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pymongo import UpdateOne

from server.store import schema

if TYPE_CHECKING:
    from server.store.db import Database

log = logging.getLogger(__name__)

V1 = ("entries", "clients", "client_groups", "spaces")
CHUNK = 1000  # documents per write and per progress line


class _Copier:
    def __init__(self, db: Database, total: int) -> None:
        self.db, self.total, self.done = db, total, 0
        self._ops: list[UpdateOne] = []

    async def put(self, address: dict[str, Any], fields: dict[str, Any]) -> None:
        self._ops.append(UpdateOne(address, {"$set": fields}, upsert=True))
        if len(self._ops) >= CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self._ops:
            await self.db.data.bulk_write(self._ops, ordered=False)
            self.done += len(self._ops)
            self._ops = []
            log.warning("migration: %d of %d documents", self.done, self.total)


async def from_v1(db: Database) -> None:
    names = set(await db.db.list_collection_names()) & set(V1)
    if not names:
        return  # a new database
    old = {name: db.db[name] for name in names}
    total = 0
    for coll in old.values():
        total += await coll.count_documents({})
    log.warning("migrating database %r to schema %d: %d documents", db.db.name, schema.SCHEMA_VERSION, total)
    copy, when = _Copier(db, total), schema.now()
    live: dict[str, int] = {}
    if "entries" in old:
        async for e in old["entries"].find({}):
            value = None if e["deleted"] else e["value"]
            await copy.put(
                schema.at(e["spaceID"], schema.ENTRY, e["key"]),
                {"value": value, "deleted": e["deleted"], "version": e["version"]},
            )
            live[e["spaceID"]] = live.get(e["spaceID"], 0) + (not e["deleted"])
    if "clients" in old:
        async for c in old["clients"].find({}):
            await copy.put(
                schema.at(c["spaceID"], schema.GROUP, c["clientGroupID"], c["_id"]),
                {"lmid": c["lastMutationID"], "version": c["version"], "lastSeen": c.get("lastSeen") or when},
            )
    if "client_groups" in old:
        async for g in old["client_groups"].find({}):
            fields: dict[str, Any] = {
                "user": g.get("userID"),
                "created": g.get("created") or when,
                "version": 0,
            }
            owner: dict[str, Any] = {"space": g["spaceID"], "user": g.get("userID")}
            if g.get("removed"):
                fields["removed"] = owner["removed"] = g["removed"]
            else:
                owner["lastSeen"] = g.get("lastSeen") or g.get("created") or when
            await copy.put(schema.at(g["spaceID"], schema.GROUP, g["_id"]), fields)
            await db.owners.update_one({"_id": g["_id"]}, {"$set": owner}, upsert=True)
    seq = 0
    if "spaces" in old:
        async for sp in old["spaces"].find({}).sort("_id", 1):
            seq += 1
            await copy.put(
                {**schema.head(sp["_id"]), "_id": sp["_id"]},
                {
                    "version": sp["version"],
                    "base": 0,
                    "entries": live.get(sp["_id"], 0),
                    "created": sp.get("created") or when,
                    "modified": sp.get("modified") or when,
                },
            )
            await db.space_list.update_one(
                {"_id": sp["_id"]}, {"$set": schema.listed(sp["_id"], seq)}, upsert=True
            )
    await copy.flush()
    await db.meta.update_one({"_id": "spaces"}, {"$set": {"seq": seq, "live": seq}}, upsert=True)
    for name in reversed(V1):  # heads first: a rerun after a crash here finds them written
        if name in old:
            await old[name].drop()
    log.warning("migration done: %d documents copied; the schema 1 collections were dropped", copy.done)
