"""A space's life: create, exists, delete (leaving a tombstone), restore from a backup.

Each change to an existing space is one transaction that moves its head with bump(), so
the caches of every process and every cookie issued so far see it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from typing import Any

from pymongo import DeleteMany, InsertOne, ReturnDocument, UpdateOne

from server.protocol import RequestError, space_not_found
from server.store import schema
from server.store.db import Database


class Spaces:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._exists_checks: dict[str, asyncio.Future[Any]] = {}

    async def create(self, space_id: str | None = None) -> tuple[str, int | None]:
        """(id, version): a random id when none is given; 409 if it exists. A deleted space
        made again starts above its tombstone's version, so no old cookie looks current;
        the version is returned then (a commit), else None. One transaction with its
        space_list entry."""

        async def run(s: Any, space_id: str) -> int | None:
            head = await self.db.data.find_one(schema.head(space_id), {"version": 1, "deleted": 1}, session=s)
            when = schema.now()
            if head is None:
                await self.db.data.insert_one(schema.new_head(space_id, when), session=s)
                version = None
            elif head.get("deleted"):
                version = head["version"] + 1
                bump = schema.bump(space_id, head["version"], when, deleted=False, base=version, created=when)
                await _write(self.db, space_id, [bump], s)
            else:
                raise RequestError(409, "SpaceExists", f"space {space_id!r} already exists")
            await self._list(space_id, s)
            return version

        if space_id is not None:
            return space_id, await self.db.transaction(lambda s: run(s, space_id))
        for _ in range(3):  # 72 random bits: a collision is for tests of this loop only
            new_id = secrets.token_urlsafe(9)
            try:
                return new_id, await self.db.transaction(lambda s, new_id=new_id: run(s, new_id))
            except RequestError:
                continue
        raise RequestError(409, "SpaceExists", "could not find a free space id; retry")

    async def _list(self, space_id: str, s: Any) -> None:
        """Add the space to space_list, newest last (its `seq`), and count it live."""
        counts = await self.db.meta.find_one_and_update(
            {"_id": "spaces"},
            {"$inc": {"seq": 1, "live": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=s,
        )
        await self.db.space_list.insert_one(schema.listed(space_id, int(counts["seq"])), session=s)

    async def _unlist(self, space_id: str, s: Any) -> None:
        await self.db.space_list.delete_one({"_id": space_id}, session=s)
        await self.db.meta.update_one({"_id": "spaces"}, {"$inc": {"live": -1}}, upsert=True, session=s)

    async def exists(self, space_id: str) -> bool:
        # Concurrent checks of one space share one query: a burst of poke listeners
        # connecting to a space would otherwise grow the connection pool by the burst.
        pending = self._exists_checks.get(space_id)
        if pending is None:
            pending = asyncio.ensure_future(self.db.data.find_one(schema.head(space_id), {"deleted": 1}))
            self._exists_checks[space_id] = pending
            pending.add_done_callback(lambda _: self._exists_checks.pop(space_id, None))
        head = await asyncio.shield(pending)
        return head is not None and not head.get("deleted")

    async def version(self, space_id: str) -> int | None:
        head = await self.db.data.find_one(schema.head(space_id), {"version": 1, "deleted": 1})
        return None if head is None or head.get("deleted") else head["version"]

    async def delete(self, space_id: str) -> int:
        """Delete everything in the space, in one transaction; returns the tombstone's version.
        Its client groups keep tombstones, so an old tab gets ClientStateNotFound."""

        async def run(s: Any) -> int:
            head = await self._live_head(space_id, s)
            when, version = schema.now(), head["version"] + 1
            groups = [
                d["key"]
                async for d in self.db.data.find(
                    {"space": space_id, "kind": schema.GROUP}, {"key": 1, "sub": 1}, session=s
                )
                if not d["sub"]
            ]
            ops: list[Any] = [
                schema.bump(space_id, head["version"], when, entries=-head.get("entries", 0), deleted=True),
                DeleteMany({"space": space_id, "kind": schema.ENTRY}),
                DeleteMany({"space": space_id, "kind": schema.GROUP}),
                *(InsertOne(schema.group_tombstone(space_id, g, version, when)) for g in groups),
            ]
            await _write(self.db, space_id, ops, s)
            await self._unlist(space_id, s)
            return version

        return await self.db.transaction(run)

    async def restore(self, space_id: str, entries: Iterable[tuple[str, str]], *, create: bool) -> int:
        """Replace the space's entries with `entries` ((key, JSON text)), in one transaction.
        Its base moves to the new version, so every older cookie gets `clear` and everything;
        its client groups end (their lmids cannot go back): they get ClientStateNotFound.
        `create`: make the space when it does not exist."""
        rows = list(entries)

        async def run(s: Any) -> int:
            head = await self.db.data.find_one(schema.head(space_id), session=s)
            when = schema.now()
            if head is None or head.get("deleted"):
                if not create:
                    raise space_not_found(space_id)
                if head is None:
                    head = schema.new_head(space_id, when)
                    await self.db.data.insert_one(head, session=s)
                await self._list(space_id, s)
            version = head["version"] + 1
            groups = [
                d["key"]
                async for d in self.db.data.find(
                    {"space": space_id, "kind": schema.GROUP}, {"key": 1, "sub": 1}, session=s
                )
                if not d["sub"] and d.get("removed") is None
            ]
            ops: list[Any] = [
                schema.bump(
                    space_id,
                    head["version"],
                    when,
                    entries=len(rows) - head.get("entries", 0),
                    base=version,
                    deleted=False,
                ),
                DeleteMany({"space": space_id, "kind": schema.ENTRY}),
                *(DeleteMany({"space": space_id, "kind": schema.GROUP, "key": g}) for g in groups),
                *(InsertOne(schema.group_tombstone(space_id, g, version, when)) for g in groups),
                *(
                    InsertOne(
                        {
                            **schema.at(space_id, schema.ENTRY, k),
                            "value": v,
                            "deleted": False,
                            "version": version,
                        }
                    )
                    for k, v in rows
                ),
            ]
            await _write(self.db, space_id, ops, s)
            return version

        return await self.db.transaction(run)

    async def _live_head(self, space_id: str, s: Any) -> dict[str, Any]:
        head = await self.db.data.find_one(schema.head(space_id), session=s)
        if head is None or head.get("deleted"):
            raise space_not_found(space_id)
        return head


async def _write(db: Database, space_id: str, ops: list[Any], s: Any) -> None:
    """One ordered bulk write whose first operation is a bump() of the space's head."""
    assert isinstance(ops[0], UpdateOne)
    written = await db.data.bulk_write(ops, ordered=True, session=s)
    if 0 in written.upserted_ids:  # the head went away meanwhile
        raise space_not_found(space_id)
