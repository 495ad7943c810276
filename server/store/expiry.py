"""Client group expiry: remove groups idle longer than a TTL, with their clients; and
groups of a user past their cap, least recently seen first.

A removed group keeps a tombstone (its group document with `removed` set), so a later push
or pull from it gets ClientStateNotFound and the client starts over: a group is never
silently made again with lastMutationID 0. Idle means its lastSeen (kept on its
group_owners record) is older than the TTL; push and pull refresh it when older than
touch_seconds (a tenth of the TTL at most), so an active group is never collected.

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
    """space -> groups whose lastSeen is before cutoff (a removed group has none)."""
    found: dict[str, list[str]] = defaultdict(list)
    async for d in db.owners.find({"lastSeen": {"$lt": cutoff}}, {"space": 1}):
        found[d["space"]].append(d["_id"])
    return found


async def remove(db: Database, space_id: str, groups: list[str], cutoff: datetime) -> tuple[int, int | None]:
    """Remove those of `groups` still idle, in one transaction: (how many, new version)."""

    async def run(s: Any) -> tuple[int, int | None]:
        head = await db.data.find_one(schema.head(space_id), {"version": 1, "deleted": 1}, session=s)
        if head is None or head.get("deleted"):
            return 0, None
        owners = db.owners.find({"_id": {"$in": sorted(groups)}}, {"lastSeen": 1}, session=s)
        idle = sorted(
            [d["_id"] async for d in owners if d.get("lastSeen") and schema.aware(d["lastSeen"]) < cutoff]
        )
        if not idle:  # all seen again meanwhile
            return 0, None
        when, version = schema.now(), head["version"] + 1
        ops: list[Any] = [schema.bump(space_id, head["version"], when)]
        for group_id in idle:
            ops.append(
                UpdateOne(
                    schema.at(space_id, schema.GROUP, group_id),
                    {"$set": {"removed": when, "version": version}},
                )
            )
            ops.append(
                DeleteMany({"space": space_id, "kind": schema.GROUP, "key": group_id, "sub": {"$gt": ""}})
            )
        written = await db.data.bulk_write(ops, ordered=True, session=s)
        if 0 in written.upserted_ids:
            raise RuntimeError(f"space {space_id} lost its head")  # aborts; never written
        gone = {"$set": {"removed": when}, "$unset": {"lastSeen": ""}}  # found idle no more
        await db.owners.update_many({"_id": {"$in": idle}}, gone, session=s)
        return len(idle), version

    return await db.transaction(run)


async def over_cap(db: Database, user: str, cap: int) -> tuple[dict[str, list[str]], datetime | None]:
    """The user's live groups past the `cap` most recently seen, by space, and the lastSeen of
    the oldest one kept: remove() takes those seen before it (a tie stays)."""
    # Through the {user} index: a user's removed groups (no lastSeen) are read too, so this
    # costs what that user's own churn left; it runs in the background, once at a time.
    query = {"user": user, "lastSeen": {"$exists": True}}  # removed groups have none
    live = [d async for d in db.owners.find(query, {"space": 1, "lastSeen": 1})]
    if len(live) <= cap:
        return {}, None
    live.sort(key=lambda d: schema.aware(d["lastSeen"]), reverse=True)
    found: dict[str, list[str]] = defaultdict(list)
    for d in live[cap:]:
        found[d["space"]].append(d["_id"])
    return found, schema.aware(live[cap - 1]["lastSeen"])


def cutoff_for(ttl_seconds: float, now: datetime | None = None) -> datetime:
    return (now or schema.now()) - timedelta(seconds=ttl_seconds)
