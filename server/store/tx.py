"""What a mutator sees: the space's entries inside the running transaction (MutatorTx),
read on demand and overlaid with the batch's own writes (Entries)."""

from __future__ import annotations

import json
from typing import Any

from pymongo import ASCENDING

from server.protocol import check_key, stored_value
from server.store import schema


class Entries:
    """The space's entries as one batch sees them. `current` holds what is known, read from
    the database or written by the batch (key -> JSON text, None = absent); `stored` what
    the database held when the transaction began, for the keys read."""

    def __init__(self, data: Any, space_id: str, session: Any, known: dict[str, str | None]) -> None:
        self._data = data
        self._space_id = space_id
        self._session = session
        self.current: dict[str, str | None] = dict(known)
        self.stored: dict[str, str | None] = dict(known)
        self.dirty: set[str] = set()

    async def get(self, key: str) -> str | None:
        if key not in self.current:
            await self.load([key])
        return self.current[key]

    async def load(self, keys: list[str]) -> None:
        """Read the keys not known yet, in one query."""
        wanted = [k for k in keys if k not in self.stored]
        if not wanted:
            return
        query = {"space": self._space_id, "kind": schema.ENTRY, "key": {"$in": wanted}}
        found = {
            d["key"]: d.get("value")
            async for d in self._data.find(query, {"key": 1, "value": 1}, session=self._session)
        }
        for key in wanted:
            self.stored[key] = found.get(key)
            self.current.setdefault(key, found.get(key))

    async def scan(self, prefix: str) -> list[tuple[str, str]]:
        keys: dict[str, str] = {"$gte": prefix}
        if prefix and prefix[-1] != "\U0010ffff":
            # Keys compare by code point (= UTF-8 byte order, MongoDB's order): the first
            # string after every key that starts with `prefix`.
            after = ord(prefix[-1]) + 1
            keys["$lt"] = prefix[:-1] + chr(0xE000 if 0xD800 <= after <= 0xDFFF else after)
        query: dict[str, Any] = {"space": self._space_id, "kind": schema.ENTRY, "key": keys}
        found: dict[str, str | None] = {}
        cursor = self._data.find(query, {"key": 1, "value": 1}, session=self._session).sort("key", ASCENDING)
        async for doc in cursor:
            if not doc["key"].startswith(prefix):
                break
            found[doc["key"]] = doc.get("value")
            self.stored.setdefault(doc["key"], doc.get("value"))
        found.update((k, v) for k, v in self.current.items() if k.startswith(prefix))
        return sorted((k, v) for k, v in found.items() if v is not None)

    def write(self, writes: dict[str, str | None]) -> None:
        self.current.update(writes)
        self.dirty.update(writes)

    def changes(self) -> list[tuple[str, str | None]]:
        """(key, JSON text or None for a delete) for every written key whose value differs
        from what the database holds (load() them first)."""
        return [(k, self.current[k]) for k in sorted(self.dirty) if self.current[k] != self.stored[k]]

    def live_delta(self) -> int:
        """How the number of live entries changes when changes() is written."""
        return sum((v is not None) - (self.stored[k] is not None) for k, v in self.changes())


class MutatorTx:
    """A mutator's transaction: reads through the batch, writes buffered until it returns,
    so a mutator that raises leaves nothing behind. Values out of our limits raise."""

    def __init__(self, entries: Entries) -> None:
        self._entries = entries
        self.writes: dict[str, str | None] = {}

    async def get(self, key: str) -> Any:
        key = check_key(key)
        raw = self.writes[key] if key in self.writes else await self._entries.get(key)
        return None if raw is None else json.loads(raw)

    async def has(self, key: str) -> bool:
        return await self.get(key) is not None

    async def put(self, key: str, value: Any) -> None:
        self.writes[check_key(key)] = stored_value(value)

    async def delete(self, key: str) -> None:
        self.writes[check_key(key)] = None

    async def scan(self, prefix: str = "") -> list[tuple[str, Any]]:
        found = dict(await self._entries.scan(check_key(prefix)))
        found.update((k, v) for k, v in self.writes.items() if k.startswith(prefix))
        return [(k, json.loads(v)) for k, v in sorted(found.items()) if v is not None]
