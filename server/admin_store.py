"""Read and delete queries for the admin inspector, kept apart from the sync path.

Inputs arrive validated (space ids, search text, limits): no user data ever becomes
a query operator.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from server.pokes import PokeHub
from server.protocol import bad, check_space_id
from server.store import Store, space_not_found

SEARCH = re.compile(r"[A-Za-z0-9_-]{0,64}")
MAX_LIMIT = 200


def check_search(text: str) -> str:
    if not SEARCH.fullmatch(text):
        raise bad("search text is at most 64 of A-Z a-z 0-9 _ -", "InvalidSearch")
    return text


def check_limit(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad(f"limit must be an integer from 1 to {MAX_LIMIT}", "InvalidLimit")
    return int(raw)


def check_offset(raw: str | None) -> int:
    if raw is None:
        return 0
    if not raw.isdigit() or int(raw) > 10**9:
        raise bad("offset must be a non-negative integer", "InvalidOffset")
    return int(raw)


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # pymongo returns naive UTC datetimes by default
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AdminStore:
    def __init__(self, store: Store, hub: PokeHub) -> None:
        self.store = store
        self.hub = hub

    async def list_spaces(self, search: str, offset: int, limit: int) -> dict[str, Any]:
        """Spaces whose id contains `search`, most recently changed first."""
        query: dict[str, Any] = {}
        if search:
            query["_id"] = {"$regex": re.escape(search)}  # validated charset: literal text
        total = await self.store.spaces.count_documents(query)
        cursor = (
            self.store.spaces.find(query)
            .sort([("modified", DESCENDING), ("_id", ASCENDING)])
            .skip(offset)
            .limit(limit)
        )
        spaces = [await self._summary(doc) async for doc in cursor]
        return {"spaces": spaces, "total": total, "offset": offset, "limit": limit}

    async def _summary(self, doc: dict[str, Any]) -> dict[str, Any]:
        space_id = doc["_id"]
        return {
            "spaceID": space_id,
            "version": doc["version"],
            "entries": await self.store.entries.count_documents({"spaceID": space_id, "deleted": False}),
            "clientGroups": await self.store.client_groups.count_documents({"spaceID": space_id}),
            "clients": await self.store.clients.count_documents({"spaceID": space_id}),
            "listeners": self.hub.listener_count(space_id),
            "created": _time(doc.get("created")),
            "modified": _time(doc.get("modified")),
        }

    async def space(self, space_id: str) -> dict[str, Any]:
        """A space's summary, plus `groups`: its client groups and their clients."""
        doc = await self.store.spaces.find_one({"_id": check_space_id(space_id)})
        if doc is None:
            raise space_not_found(space_id)
        groups: dict[str, dict[str, Any]] = {}
        async for g in self.store.client_groups.find({"spaceID": space_id}).sort("_id", ASCENDING):
            groups[g["_id"]] = {
                "clientGroupID": g["_id"],
                "created": _time(g.get("created")),
                "lastSeen": None,
                "clients": [],
            }
        async for c in self.store.clients.find({"spaceID": space_id}).sort("_id", ASCENDING):
            client = {
                "clientID": c["_id"],
                "lastMutationID": c["lastMutationID"],
                "version": c.get("version"),
                "lastSeen": _time(c.get("lastSeen")),
            }
            group = groups.setdefault(
                c["clientGroupID"],
                {"clientGroupID": c["clientGroupID"], "created": None, "lastSeen": None, "clients": []},
            )
            group["clients"].append(client)
            if client["lastSeen"] and (group["lastSeen"] or "") < client["lastSeen"]:
                group["lastSeen"] = client["lastSeen"]
        return {**await self._summary(doc), "groups": list(groups.values())}

    async def entries(self, space_id: str, after: str, limit: int) -> dict[str, Any]:
        """Live entries in key order, `limit` at a time after the key `after`."""
        if not await self.store.space_exists(check_space_id(space_id)):
            raise space_not_found(space_id)
        query: dict[str, Any] = {"spaceID": space_id, "deleted": False}
        if after:
            query["key"] = {"$gt": after}  # `after` is a plain string value
        cursor = (
            self.store.entries.find(query, {"key": 1, "value": 1, "version": 1})
            .sort("key", ASCENDING)
            .limit(limit + 1)
        )
        rows = [
            {"key": d["key"], "value": json.loads(d["value"]), "version": d["version"]} async for d in cursor
        ]
        more = len(rows) > limit
        rows = rows[:limit]
        return {"entries": rows, "next": rows[-1]["key"] if more else None}

    async def export(self, space_id: str) -> AsyncIterator[str]:
        """The whole space as one JSON document, produced in pieces (spaces can be big)."""
        summary = await self.space(space_id)
        yield '{"space":' + json.dumps(summary, ensure_ascii=False) + ',"entries":['
        first = True
        cursor = self.store.entries.find(
            {"spaceID": space_id, "deleted": False}, {"key": 1, "value": 1, "version": 1}
        ).sort("key", ASCENDING)
        async for d in cursor:
            # The stored value is already canonical JSON text: embed it as is.
            row = '{"key":' + json.dumps(d["key"], ensure_ascii=False)
            row += ',"version":' + str(int(d["version"])) + ',"value":' + d["value"] + "}"
            yield row if first else "," + row
            first = False
        yield "]}"

    async def delete_space(self, space_id: str) -> None:
        """Delete a space and everything in it. The space document goes first, so any
        push or pull from then on gets 404; listeners get a final poke to find out, then
        their streams end (a reconnect gets a 404)."""
        result = await self.store.spaces.delete_one({"_id": check_space_id(space_id)})
        if result.deleted_count != 1:
            raise space_not_found(space_id)
        self.store.forget_space(space_id)
        for coll in (self.store.entries, self.store.clients, self.store.client_groups):
            await coll.delete_many({"spaceID": space_id})
        self.hub.end(space_id)
