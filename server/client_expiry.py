"""Client group expiry, in the background: Store.expire_groups() now and every interval.

What is removed, and why a removed group starts over safely: server/store/expiry.py.
"""

from __future__ import annotations

import asyncio
import logging

from pymongo.errors import PyMongoError

from server.store import Store

log = logging.getLogger(__name__)

DAY = 86400.0


def start(store: Store, ttl_days: float, interval_seconds: float) -> asyncio.Task[None] | None:
    """Expire groups idle for ttl_days now and every interval_seconds; None when ttl_days is 0."""
    if ttl_days <= 0:
        return None
    return asyncio.create_task(_loop(store, ttl_days * DAY, interval_seconds))


async def _loop(store: Store, ttl: float, interval: float) -> None:
    while True:
        try:
            removed = await store.expire_groups(ttl)
            if removed:
                log.info("client expiry removed %d idle client groups", removed)
        except PyMongoError as e:  # e.g. the database is down: try again next time
            log.warning("client expiry failed: %s", e)
        await asyncio.sleep(interval)
