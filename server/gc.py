"""Client GC: remove client groups (and their clients) idle longer than a TTL.

A removed group keeps a tombstone (its client_groups document with `removed` set),
so a later push or pull from it gets 200 {"error":"ClientStateNotFound"} and the
client starts over; the group is never silently recreated with lastMutationID 0.
Tombstones are a few dozen bytes each and are kept.

Idle means `lastSeen` (or `created`) older than the TTL. Push and pull refresh
`lastSeen` when it is older than store.touch_seconds, so an active group is never
collected. Each group is removed in its own transaction, which conflicts with (and
so serialises against) a push or pull touching the same group.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import PyMongoError

from server.store import Store

log = logging.getLogger(__name__)

DAY = 86400.0


def _idle(cutoff: datetime) -> dict[str, Any]:
    return {
        "removed": {"$exists": False},
        "$or": [
            {"lastSeen": {"$lt": cutoff}},
            {"lastSeen": {"$exists": False}, "created": {"$lt": cutoff}},
        ],
    }


async def collect(store: Store, ttl_seconds: float, now: datetime | None = None) -> int:
    """Remove every group idle for ttl_seconds (as of `now`); returns how many."""
    now = now or datetime.now(UTC)
    idle = _idle(now - timedelta(seconds=ttl_seconds))
    found = [(g["_id"], g["spaceID"]) async for g in store.client_groups.find(idle, {"spaceID": 1})]
    removed = 0
    for group_id, space_id in found:

        async def remove(s: Any, group_id: str = group_id, space_id: str = space_id) -> int:
            done = await store.client_groups.update_one(
                {"_id": group_id, **idle}, {"$set": {"removed": now}}, session=s
            )
            if done.modified_count == 0:  # seen again meanwhile
                return 0
            await store.clients.delete_many({"clientGroupID": group_id}, session=s)
            # A new version, so no process pushes on from what it knew of these clients.
            await store.spaces.update_one({"_id": space_id}, {"$inc": {"version": 1}}, session=s)
            return 1

        if await store._transaction(remove):
            store.forget_group(group_id)
            removed += 1
    return removed


def start(store: Store, ttl_days: float, interval_seconds: float) -> asyncio.Task[None] | None:
    """Run collect() now and every interval_seconds; None when ttl_days is 0 (off)."""
    if ttl_days <= 0:
        return None
    ttl = ttl_days * DAY
    # Refresh lastSeen well within the TTL, so an active group never looks idle.
    store.touch_seconds = min(store.touch_seconds, ttl / 10)
    return asyncio.create_task(_loop(store, ttl, interval_seconds))


async def _loop(store: Store, ttl: float, interval: float) -> None:
    while True:
        try:
            await store.client_groups.create_index([("lastSeen", ASCENDING)])  # no-op once made
            removed = await collect(store, ttl)
            if removed:
                log.info("client GC removed %d idle client groups", removed)
        except PyMongoError as e:  # e.g. the database is down: try again next time
            log.warning("client GC failed: %s", e)
        await asyncio.sleep(interval)
