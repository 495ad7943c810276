"""Client group expiry: remove groups idle longer than a TTL, with their clients.

A removed group keeps a tombstone (its group document with `removed` set), so a later push
or pull from it gets ClientStateNotFound and the client starts over: a group is never
silently made again with lastMutationID 0. Idle means lastSeen older than the TTL; push
and pull refresh lastSeen when it is older than touch_seconds (a tenth of the TTL at most),
so an active group is never collected.

Each space with idle groups is one transaction that moves its version once, however many
groups go: caches in every process see it, and its listeners are poked once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from pymongo import DeleteMany, UpdateOne

from server.store import schema
from server.store.db import Database


async def idle_groups(db: Database, cutoff: datetime) -> dict[str, list[str]]:
    """space -> groups whose lastSeen is before cutoff (removed groups have none)."""
    found: dict[str, list[str]] = defaultdict(list)
    query = {"kind": schema.GROUP, "sub": "", "lastSeen": {"$lt": cutoff}}
    async for d in db.data.find(query, {"space": 1, "key": 1}):
        found[d["space"]].append(d["key"])
    return found


async def remove(db: Database, space_id: str, groups: list[str], cutoff: datetime) -> tuple[int, int | None]:
    """Remove those of `groups` still idle, in one transaction: (how many, new version)."""

    async def run(s: Any) -> tuple[int, int | None]:
        head = await db.data.find_one(schema.head(space_id), {"version": 1, "deleted": 1}, session=s)
        if head is None or head.get("deleted"):
            return 0, None
        query = {"space": space_id, "kind": schema.GROUP, "key": {"$in": sorted(groups)}}
        fields = {"key": 1, "sub": 1, "lastSeen": 1, "removed": 1}
        docs = [d async for d in db.data.find(query, fields, session=s)]
        idle = [
            d["key"]
            for d in docs
            if not d["sub"]
            and d.get("removed") is None
            and schema.aware(d.get("lastSeen") or cutoff) < cutoff
        ]
        if not idle:  # all seen again meanwhile
            return 0, None
        when, version = schema.now(), head["version"] + 1
        ops: list[Any] = [schema.bump(space_id, head["version"], when)]
        for group_id in idle:
            ops.append(
                UpdateOne(
                    schema.at(space_id, schema.GROUP, group_id),
                    {"$set": {"removed": when, "version": version}, "$unset": {"lastSeen": ""}},
                )
            )
            ops.append(
                DeleteMany({"space": space_id, "kind": schema.GROUP, "key": group_id, "sub": {"$gt": ""}})
            )
        written = await db.data.bulk_write(ops, ordered=True, session=s)
        if 0 in written.upserted_ids:
            raise RuntimeError(f"space {space_id} lost its head")  # aborts; never written
        return len(idle), version

    return await db.transaction(run)


def cutoff_for(ttl_seconds: float, now: datetime | None = None) -> datetime:
    return (now or schema.now()) - timedelta(seconds=ttl_seconds)
