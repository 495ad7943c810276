"""The stored document model (schema version 2): what each document holds and how it is
addressed. Every filter on space data names its `space`, the shard key.

One collection, `space_data`, holds every space, partitioned by `space`. A document is
addressed by (space, kind, key, sub), unique:

  head    kind "h", key "", sub "": _id = spaceID, version (the cookie), base (the version
          the space was (re)created or restored at: an older cookie's base is gone),
          entries (live count), created, modified, deleted (a tombstone after an admin delete)
  entry   kind "e", key = entry key: value (JSON text, null once deleted), deleted, version
  group   kind "g", key = clientGroupID, sub "": user, created, removed, version
  client  kind "g", key = clientGroupID, sub = clientID: lmid, lastSeen, version

A group and its clients share a key, so one query reads both. `version` is the space
version of a document's last change; a pull reads {space, version >= cookie}. The
collection has just the two indexes every request needs: the embedded database pays for
each index on every document it writes (a batch of 10 spaces' pushes took ~2x as long
with five indexes as with two), and a push writes three documents.

Beside it, written by the few requests that need them:
  group_owners {_id: clientGroupID, space, user, lastSeen, removed}: where a group was
          first seen (a group that turns up in another space, or as another user, starts
          over), and when it was last seen, for client expiry (refreshed at most hourly)
  space_list {_id: spaceID, name: spaceID, seq}: live spaces in creation order, for the
          admin list (written when a space is made or deleted)
  meta    {_id: "schema", version} and {_id: "spaces", seq, live}: the last `seq` given
          and how many spaces are live

The rule that keeps every cache honest: each write to a space's entries, clients or
group tombstones moves its head from the version the writer read to the next one, with
bump() and nothing else. New groups and lastSeen refreshes are the only writes without one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne

SCHEMA_VERSION = 2
DATA = "space_data"
OWNERS = "group_owners"
SPACE_LIST = "space_list"
META = "meta"

HEAD, ENTRY, GROUP = "h", "e", "g"

INDEXES = {
    DATA: [
        IndexModel(
            [("space", ASCENDING), ("kind", ASCENDING), ("key", ASCENDING), ("sub", ASCENDING)], unique=True
        ),
        # Pulls ({space, version >= c}) and bump()'s conditional head update.
        IndexModel([("space", ASCENDING), ("version", ASCENDING), ("kind", ASCENDING)]),
    ],
    OWNERS: [IndexModel([("user", ASCENDING)]), IndexModel([("lastSeen", ASCENDING)])],  # expiry
    SPACE_LIST: [IndexModel([("seq", ASCENDING)]), IndexModel([("name", ASCENDING)])],  # list, search
}


# A change stream of commits: head documents only (the only ones whose _id is a string,
# the space id), with what a watcher reads: the new version, and whether it was deleted.
HEAD_EVENTS: list[dict[str, Any]] = [
    {
        "$match": {
            "operationType": {"$in": ["insert", "update", "replace"]},
            "documentKey._id": {"$type": "string"},
        }
    },
    {
        "$project": {
            "operationType": 1,
            "documentKey": 1,
            "updateDescription.updatedFields.version": 1,
            "updateDescription.updatedFields.deleted": 1,
        }
    },
]


def now() -> datetime:
    return datetime.now(UTC)


def at(space: str, kind: str, key: str = "", sub: str = "") -> dict[str, str]:
    """The unique address of one document."""
    return {"space": space, "kind": kind, "key": key, "sub": sub}


def head(space: str) -> dict[str, str]:
    return at(space, HEAD)


def new_head(space: str, when: datetime) -> dict[str, Any]:
    return {
        **head(space),
        "_id": space,
        "version": 0,
        "base": 0,
        "entries": 0,
        "created": when,
        "modified": when,
    }


def listed(space: str, seq: int) -> dict[str, Any]:
    """A space's space_list document."""
    return {"_id": space, "name": space, "seq": seq}


def owner(group: str, space: str, user: str | None, when: datetime) -> dict[str, Any]:
    return {"_id": group, "space": space, "user": user, "lastSeen": when}


def touch_owner(group: str, when: datetime) -> UpdateOne:
    """The group was seen: client expiry reads this."""
    return UpdateOne({"_id": group}, {"$set": {"lastSeen": when}})


def bump(space: str, seen: int, when: datetime, *, entries: int = 0, **fields: Any) -> UpdateOne:
    """Move the space's head from version `seen` to seen + 1 (documents written with it carry
    seen + 1). If another writer moved it first, the upsert's insert collides with the head's
    _id: the write fails with a duplicate key and the transaction starts over with fresh reads.
    An upsert that succeeds means the head was gone; writers check and abort (see upserted())."""
    return UpdateOne(
        {"space": space, "version": seen, "kind": HEAD},
        {
            "$inc": {"version": 1, "entries": entries},
            "$set": {"modified": when, **fields},
            "$setOnInsert": {"_id": space, "key": "", "sub": ""},
        },
        upsert=True,
    )


def put_entry(space: str, key: str, value: str, version: int) -> UpdateOne:
    return UpdateOne(
        at(space, ENTRY, key), {"$set": {"value": value, "deleted": False, "version": version}}, upsert=True
    )


def delete_entry(space: str, key: str, version: int) -> UpdateOne:
    return UpdateOne(at(space, ENTRY, key), {"$set": {"value": None, "deleted": True, "version": version}})


def set_client(space: str, group: str, client: str, lmid: int, version: int, when: datetime) -> UpdateOne:
    return UpdateOne(
        at(space, GROUP, group, client),
        {"$set": {"lmid": lmid, "version": version, "lastSeen": when}},
        upsert=True,
    )


def new_group(space: str, group: str, user: str | None, version: int, when: datetime) -> UpdateOne:
    return UpdateOne(
        at(space, GROUP, group),
        {"$setOnInsert": {"user": user, "created": when, "version": version}},
        upsert=True,
    )


def group_tombstone(space: str, group: str, version: int, when: datetime) -> dict[str, Any]:
    """A removed group: a later push or pull from it gets ClientStateNotFound."""
    return {**at(space, GROUP, group), "user": None, "created": when, "removed": when, "version": version}


def is_removed(group: dict[str, Any] | None) -> bool:
    return group is not None and group.get("removed") is not None


def aware(value: datetime) -> datetime:
    """BSON dates come back naive (UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
