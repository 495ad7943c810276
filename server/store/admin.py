"""Read-only queries for the admin inspector, kept apart from the sync path.

Inputs arrive validated (space ids, search text, limits): no user data becomes a query
operator. Every query reads through an index and costs what its page holds, not what the
database holds: the embedded database walks a range whole before it applies a limit, so
the spaces list finds a page in space_list by `seq` (newest first), never by a sorted
scan, and counts nothing it would have to scan.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from server.protocol import space_not_found
from server.store import schema
from server.store.db import Database

MAX_PAGE = 200
GROUPS_SHOWN = 200  # client groups (with their clients) in one space view
SEQ_CHUNKS = 20  # seq lookups for one page of the list, however many spaces were deleted


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return schema.aware(value).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AdminQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_spaces(self, prefix: str, before: int | None, limit: int) -> dict[str, Any]:
        """Live spaces whose id starts with `prefix`, newest first, `limit` at a time below the
        `seq` cursor `before` (None: from the newest). `next` is the cursor of the next page."""
        limit = min(limit, MAX_PAGE)
        if prefix:  # ids are [A-Za-z0-9_-]: "\x7f" sorts after every id with this prefix
            matches = [
                d async for d in self.db.space_list.find({"name": {"$gte": prefix, "$lt": prefix + "\x7f"}})
            ]
            total = len(matches)
            listed = sorted((d for d in matches if before is None or d["seq"] < before), key=_newest)
        else:
            counts = await self.db.meta.find_one({"_id": "spaces"}) or {}
            total = max(0, counts.get("live", 0))
            listed = await self._by_seq(before, limit + 1, counts.get("seq", 0))
        page = listed[:limit]
        heads = [await self.db.data.find_one(schema.head(d["_id"])) for d in page]
        return {
            "spaces": [await self.summary(h) for h in heads if h is not None],
            "total": total,
            "next": page[-1]["seq"] if len(listed) > limit else None,
        }

    async def _by_seq(self, before: int | None, wanted: int, last: int) -> list[dict[str, Any]]:
        """Up to `wanted` listed spaces below `before`, newest first: point lookups by seq."""
        top = last + 1 if before is None else min(before, last + 1)
        found: list[dict[str, Any]] = []
        for _ in range(SEQ_CHUNKS):
            if top <= 1 or len(found) >= wanted:
                break
            chunk = list(range(top - 1, max(0, top - 1 - 2 * wanted), -1))
            top = chunk[-1]
            found += sorted([d async for d in self.db.space_list.find({"seq": {"$in": chunk}})], key=_newest)
        return found

    async def summary(self, head: dict[str, Any]) -> dict[str, Any]:
        space_id = head["space"]
        groups = clients = 0
        async for d in self.db.data.find({"space": space_id, "kind": schema.GROUP}, {"sub": 1, "removed": 1}):
            if d["sub"]:
                clients += 1
            elif d.get("removed") is None:
                groups += 1
        return {
            "spaceID": space_id,
            "version": head["version"],
            "entries": head.get("entries", 0),
            "clientGroups": groups,
            "clients": clients,
            "created": _time(head.get("created")),
            "modified": _time(head.get("modified")),
        }

    async def space(self, space_id: str) -> dict[str, Any]:
        """A space's summary, plus `groups`: its client groups (the first GROUPS_SHOWN) and
        their clients."""
        head = await self._head(space_id)
        groups: dict[str, dict[str, Any]] = {}
        docs = self.db.data.find({"space": space_id, "kind": schema.GROUP}).sort([("key", 1), ("sub", 1)])
        async for d in docs:
            group = groups.get(d["key"])
            if group is None:
                if len(groups) == GROUPS_SHOWN:
                    break
                group = groups[d["key"]] = {
                    "clientGroupID": d["key"],
                    "created": None,
                    "lastSeen": None,
                    "clients": [],
                }
            if not d["sub"]:
                group["created"] = _time(d.get("created"))
                group["removed"] = _time(d.get("removed"))
                group["user"] = d.get("user")
                continue
            client = {
                "clientID": d["sub"],
                "lastMutationID": d["lmid"],
                "version": d.get("version"),
                "lastSeen": _time(d.get("lastSeen")),
            }
            group["clients"].append(client)
            if client["lastSeen"] and (group["lastSeen"] or "") < client["lastSeen"]:
                group["lastSeen"] = client["lastSeen"]
        live = [g for g in groups.values() if not g.get("removed")]
        return {**await self.summary(head), "groups": live}

    async def entries(self, space_id: str, after: str, limit: int) -> dict[str, Any]:
        """Live entries in key order, `limit` at a time after the key `after`."""
        await self._head(space_id)
        query: dict[str, Any] = {"space": space_id, "kind": schema.ENTRY, "key": {"$gt": after}}
        rows = []
        async for d in self.db.data.find(query, {"key": 1, "value": 1, "version": 1, "deleted": 1}).sort(
            "key", 1
        ):
            if d.get("deleted"):
                continue
            rows.append({"key": d["key"], "value": json.loads(d["value"]), "version": d["version"]})
            if len(rows) > limit:
                break
        more = len(rows) > limit
        rows = rows[:limit]
        return {"entries": rows, "next": rows[-1]["key"] if more else None}

    async def export(self, space_id: str) -> AsyncIterator[str]:
        """The whole space as one JSON document, produced in pieces (spaces can be big):
        {"space": summary, "version": schema, "entries": [{key, version, value}]}."""
        summary = await self.summary(await self._head(space_id))
        yield (
            f'{{"schema":{schema.SCHEMA_VERSION},"space":'
            + json.dumps(summary, ensure_ascii=False)
            + ',"entries":['
        )
        first = True
        query = {"space": space_id, "kind": schema.ENTRY}
        async for d in self.db.data.find(query, {"key": 1, "value": 1, "version": 1, "deleted": 1}).sort(
            "key", 1
        ):
            if d.get("deleted"):
                continue
            # The stored value is already canonical JSON text: embed it as is.
            row = '{"key":' + json.dumps(d["key"], ensure_ascii=False)
            row += ',"version":' + str(int(d["version"])) + ',"value":' + d["value"] + "}"
            yield row if first else "," + row
            first = False
        yield "]}"

    async def _head(self, space_id: str) -> dict[str, Any]:
        head = await self.db.data.find_one(schema.head(space_id))
        if head is None or head.get("deleted"):
            raise space_not_found(space_id)
        return head


def _newest(listed: dict[str, Any]) -> int:
    return -int(listed["seq"])
