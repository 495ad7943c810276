"""Pull: what changed in a space since the client's cookie, read from one snapshot.

Round trips: none for an unchanged cookie when this process makes every commit itself
(one process on its own embedded database); else one query ({space, version >= cookie})
plus the commit of its read-only snapshot transaction. A group this process has not
checked lately is first checked against its owner record (bound on first sight), and its
lastSeen refreshed when due.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from server.protocol import CLIENT_STATE_NOT_FOUND, PullRequest, encode_pull_response, space_not_found
from server.store import schema
from server.store.caches import Owner, Owners, Seen, Versions
from server.store.db import Database

CSN_BODY = json.dumps(CLIENT_STATE_NOT_FOUND).encode()
FIELDS = {
    "kind": 1,
    "key": 1,
    "sub": 1,
    "version": 1,
    "value": 1,
    "deleted": 1,
    "lmid": 1,
    "removed": 1,
    "base": 1,
}


class _Refused(Exception):
    """Answer ClientStateNotFound: the client starts over."""


class _Whole(Exception):
    """The answer needs more than one query: read it in a transaction."""


class Puller:
    def __init__(
        self,
        db: Database,
        *,
        owners: Owners,
        versions: Versions,
        seen: Seen,
        cache: bool,
        touch_seconds: Callable[[], float],
        on_new_group: Callable[[str | None], None],
    ) -> None:
        """cache: answer unchanged cookies from `versions` (only when every commit is ours).
        on_new_group(user): called after a pull that made a new group committed."""
        self.db = db
        self.owners = owners
        self.versions = versions
        self.seen = seen
        self.cache = cache
        self.touch_seconds = touch_seconds
        self.on_new_group = on_new_group

    async def pull(self, space_id: str, request: PullRequest) -> bytes:
        if request.foreign_cookie:
            return CSN_BODY
        group_id, cookie, user_id = request.client_group_id, request.cookie, request.user_id
        owner = self.owners.get(group_id)
        if owner is not None and not owner.admits(space_id, user_id):
            return CSN_BODY  # seen in another space or as another user
        checked = owner is not None and not self.seen.due(group_id, self.touch_seconds(), time.monotonic())
        if self.cache and checked and cookie is not None and self.versions.get(space_id) == cookie:
            return encode_pull_response(cookie, {}, [])
        try:
            if checked and cookie is not None:  # one query: a snapshot read, no transaction
                try:
                    body, version = await self.db.snapshot_read(
                        lambda s: self._read(space_id, group_id, cookie, s, one_query=True)
                    )
                except _Whole:
                    body, version = await self.db.transaction(
                        lambda s: self._read(space_id, group_id, cookie, s)
                    )
            elif checked:
                body, version = await self.db.transaction(lambda s: self._read(space_id, group_id, cookie, s))
            else:
                body, version, owner, new = await self.db.transaction(
                    lambda s: self._check_and_read(space_id, group_id, user_id, cookie, s)
                )
                self.owners.put(group_id, owner)
                if new:
                    self.on_new_group(user_id)
        except _Refused:
            return CSN_BODY
        self.versions.note(space_id, version)
        return body

    async def _read(
        self,
        space_id: str,
        group_id: str,
        cookie: int | None,
        s: Any,
        group: dict[str, Any] | None = None,
        one_query: bool = False,
        new_group: bool = False,
    ) -> tuple[bytes, int]:
        """group: the group's document when already read. one_query: `s` is not a
        transaction; raise _Whole where more reads must agree. new_group: first sight."""
        data = self.db.data
        rows: list[dict[str, Any]] = []
        if cookie is not None:
            rows = [
                r
                async for r in data.find({"space": space_id, "version": {"$gte": cookie}}, FIELDS, session=s)
            ]
        head = next((r for r in rows if r["kind"] == schema.HEAD), None)
        if head is None:
            head = await data.find_one(schema.head(space_id), FIELDS, session=s)
            if one_query and head is not None and cookie is not None and head["version"] >= cookie:
                raise _Whole  # a commit landed between the two reads
        if head is None:
            raise space_not_found(space_id)
        version = head["version"]
        if head.get("deleted") and new_group:
            raise space_not_found(space_id)  # a client that never saw it: 404, like a space never made
        if head.get("deleted") or (cookie is not None and cookie > version):
            # A deleted space's old tab, or a cookie this server never reached (its state was
            # lost, e.g. a restored backup; or a client lying): start over. Never move the
            # version to a cookie: one crafted cookie near 2**53 would break the space.
            raise _Refused
        reset = cookie is None or cookie < head.get("base", 0)
        if reset and one_query:
            raise _Whole
        if reset:
            # Everything: a new client, or a cookie from before the space was (re)created or
            # restored, whose base is gone (then `clear` first; the cookie still grows).
            rows = [r async for r in data.find({"space": space_id, "kind": schema.ENTRY}, FIELDS, session=s)]
            mine = {"space": space_id, "kind": schema.GROUP, "key": group_id}
            rows += [r async for r in data.find(mine, FIELDS, session=s)]
        since = 0 if reset else cookie
        assert since is not None
        if group is None:
            group = next(
                (r for r in rows if r["kind"] == schema.GROUP and r["key"] == group_id and not r["sub"]), None
            )
        if schema.is_removed(group):
            raise _Refused
        ops: list[tuple[str, ...]] = [("clear",)] if reset and cookie is not None else []
        for r in sorted((r for r in rows if r["kind"] == schema.ENTRY and r["version"] > since), key=_key):
            if not r.get("deleted"):
                ops.append(("put", r["key"], r["value"]))
            elif since:  # a client starting from nothing never had it
                ops.append(("del", r["key"]))
        lmids = {
            r["sub"]: r["lmid"]
            for r in rows
            if r["kind"] == schema.GROUP and r["key"] == group_id and r["sub"] and r["version"] > since
        }
        return encode_pull_response(version, lmids, ops), version

    async def _check_and_read(
        self, space_id: str, group_id: str, user_id: str | None, cookie: int | None, s: Any
    ) -> tuple[bytes, int, Owner, bool]:
        """A group this process has not checked lately: its owner record, its document
        (removed?), the read, and its lastSeen (which client expiry reads) when due; and
        whether the group is new."""
        found = await self.db.owners.find_one({"_id": group_id}, session=s)
        if found is not None and found.get("removed") is not None:
            raise _Refused  # removed by client expiry
        owner = None if found is None else Owner(found["space"], found.get("user"))
        if owner is not None and not owner.admits(space_id, user_id):
            raise _Refused
        group = await self.db.data.find_one(schema.at(space_id, schema.GROUP, group_id), session=s)
        if owner is not None and group is None:
            raise _Refused  # its space was deleted and made again
        new = owner is None
        body, version = await self._read(space_id, group_id, cookie, s, group=group or {}, new_group=new)
        when, age = schema.now(), 0.0
        if owner is None:  # bind it to this space (and user) on first sight
            owner = Owner(space_id, user_id)
            await self.db.owners.insert_one(schema.owner(group_id, space_id, user_id, when), session=s)
            await self.db.data.bulk_write(
                [schema.new_group(space_id, group_id, user_id, version, when)], session=s
            )
        else:
            last = found.get("lastSeen") if found else None
            age = (when - schema.aware(last)).total_seconds() if last else float("inf")
            if age >= self.touch_seconds():
                await self.db.owners.bulk_write([schema.touch_owner(group_id, when)], session=s)
                age = 0.0
        self.seen.put(group_id, time.monotonic() - age)
        return body, version, owner, new


def _key(row: dict[str, Any]) -> str:
    return row["key"]
