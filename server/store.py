"""MongoDB persistence: spaces, client groups, clients, entries; push and pull.

Per-space version strategy (spec 5.3). Every push batch is one multi-document
transaction that stamps changed entries and clients with the space's next version.
Pushes for one space are queued and applied by one runner at a time; with group
commit, everything queued while a transaction runs goes into the next one. A transaction
that finds the version this process's last commit made starts from what that commit
knew (_Known) instead of reading it again.

Collections:
  spaces        {_id: spaceID, version, created, modified}
  client_groups {_id: clientGroupID, spaceID, userID (with auth), created, lastSeen,
                 removed (a tombstone left by client GC, server/gc.py)}
  clients       {_id: clientID, clientGroupID, spaceID, lastMutationID, version}
  entries       {spaceID, key, value (JSON text), deleted, version}
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne, WriteConcern
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError, ServerSelectionTimeoutError
from pymongo.read_concern import ReadConcern

from server import metrics
from server.mutators import MUTATORS, Mutator
from server.protocol import (
    CLIENT_STATE_NOT_FOUND,
    PullRequest,
    PushRequest,
    RequestError,
    bad,
    dump_value,
    encode_pull_response,
)

log = logging.getLogger(__name__)

MAX_BATCH_PUSHES = 200  # bounds one group-commit transaction
GROUP_CACHE_SIZE = 100_000
KNOWN_SPACES = 256  # spaces whose last committed state a push may start from
KNOWN_MAX = 256  # entries, groups or clients kept of one space (bounds memory)
WRITE_CONFLICT = 112  # MongoDB error code
TOUCH_SECONDS = 3600.0  # a group's lastSeen is refreshed when older than this (client GC)


def space_not_found(space_id: str) -> RequestError:
    return RequestError(404, "SpaceNotFound", f"space {space_id!r} does not exist")


def _now() -> datetime:
    return datetime.now(UTC)


def _group_refusal(group: dict[str, Any], space_id: str, user_id: str | None) -> dict[str, Any] | None:
    """Why an existing client group may not be used here: raises, or returns a 200 error body."""
    group_id = group["_id"]
    if group["spaceID"] != space_id:
        raise bad(f"client group {group_id!r} belongs to another space", "ClientGroupWrongSpace")
    if group.get("removed"):  # collected as idle: the client must start over
        return CLIENT_STATE_NOT_FOUND
    if user_id is not None and group.get("userID") != user_id:
        if group.get("userID") is None:  # made before auth was on: start over as this user
            return CLIENT_STATE_NOT_FOUND
        raise RequestError(401, "ClientGroupWrongUser", f"client group {group_id!r} belongs to another user")
    return None


def _new_group(group_id: str, space_id: str, user_id: str | None) -> dict[str, Any]:
    now = _now()
    group = {"_id": group_id, "spaceID": space_id, "created": now, "lastSeen": now}
    if user_id is not None:
        group["userID"] = user_id
    return group


class Entries:
    """The space's entries as one batch sees them: database rows read on demand
    inside the transaction, overlaid with the batch's own writes."""

    def __init__(
        self, coll: Any, space_id: str, session: Any, known: dict[str, str | None] | None = None
    ) -> None:
        self._coll = coll
        self._space_id = space_id
        self._session = session
        # key -> JSON text, None = absent; `known`: what the database holds, read earlier
        self.current: dict[str, str | None] = known or {}
        self.live_in_db: dict[str, bool] = {k: v is not None for k, v in self.current.items()}
        self.dirty: set[str] = set()

    async def get(self, key: str) -> str | None:
        if key not in self.current:
            doc = await self._coll.find_one(
                {"spaceID": self._space_id, "key": key}, {"value": 1, "deleted": 1}, session=self._session
            )
            live = doc is not None and not doc["deleted"]
            self.live_in_db[key] = live
            self.current[key] = doc["value"] if live else None
        return self.current[key]

    async def scan(self, prefix: str) -> list[tuple[str, str]]:
        found: dict[str, str | None] = {}
        cursor = self._coll.find(
            {"spaceID": self._space_id, "key": {"$gte": prefix}, "deleted": False},
            {"key": 1, "value": 1},
            session=self._session,
        ).sort("key", ASCENDING)
        async for doc in cursor:
            if not doc["key"].startswith(prefix):
                break
            found[doc["key"]] = doc["value"]
            self.live_in_db.setdefault(doc["key"], True)
        for key, value in self.current.items():
            if key.startswith(prefix):
                found[key] = value
        return sorted((k, v) for k, v in found.items() if v is not None)

    def write(self, writes: dict[str, str | None]) -> None:
        self.current.update(writes)
        self.dirty.update(writes)

    def operations(self, version: int) -> list[UpdateOne]:
        ops = []
        for key in sorted(self.dirty):
            value = self.current[key]
            where = {"spaceID": self._space_id, "key": key}
            if value is not None:
                ops.append(
                    UpdateOne(
                        where, {"$set": {"value": value, "deleted": False, "version": version}}, upsert=True
                    )
                )
            elif self.live_in_db.get(key, True):  # unknown: the filter finds out
                ops.append(
                    UpdateOne({**where, "deleted": False}, {"$set": {"deleted": True, "version": version}})
                )
        return ops


class MutatorTx:
    """What a mutator sees: reads through the batch, writes buffered until it returns."""

    def __init__(self, entries: Entries) -> None:
        self._entries = entries
        self.writes: dict[str, str | None] = {}

    async def get(self, key: str) -> Any:
        raw = self.writes[key] if key in self.writes else await self._entries.get(_key(key))
        return None if raw is None else json.loads(raw)

    async def has(self, key: str) -> bool:
        return await self.get(key) is not None

    async def put(self, key: str, value: Any) -> None:
        self.writes[_key(key)] = dump_value(value)

    async def delete(self, key: str) -> None:
        self.writes[_key(key)] = None

    async def scan(self, prefix: str = "") -> list[tuple[str, Any]]:
        found = dict(await self._entries.scan(_key(prefix)))
        found.update((k, v) for k, v in self.writes.items() if k.startswith(prefix))
        return [(k, json.loads(v)) for k, v in sorted(found.items()) if v is not None]


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"keys are strings, got {key!r}")
    return key


@dataclass
class _Known:
    """A space as this process's last commit to it left it (the parts a push reads).
    Still true for the next transaction if that finds exactly this version: every write
    to a space's entries, clients or groups' tombstones bumps the version (new groups
    from pulls do not, so only groups that exist are kept)."""

    created: Any  # tells a space from one deleted and made again under its id
    version: int
    entries: dict[str, str | None]
    groups: dict[str, dict[str, Any]]
    clients: dict[str, dict[str, Any]]


@dataclass
class _Batch:
    """State shared by the pushes of one transaction attempt."""

    space_id: str
    version: int
    entries: Entries
    groups: dict[str, dict[str, Any]]
    clients: dict[str, dict[str, Any]]
    new_groups: set[str] = field(default_factory=set)
    touched_groups: set[str] = field(default_factory=set)
    changed_clients: set[str] = field(default_factory=set)
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (mutator, outcome) for metrics


class _Unchanged(Exception):
    """Raised out of a push transaction that would write nothing, to roll it back."""

    def __init__(self, results: list[Any], outcomes: list[tuple[str, str]]) -> None:
        super().__init__("nothing to write")
        self.results = results
        self.outcomes = outcomes


@dataclass
class _Queued:
    request: PushRequest
    future: asyncio.Future[dict[str, Any]]


class Store:
    def __init__(
        self,
        client: Any,
        db_name: str = "replicache",
        *,
        group_commit: bool = True,
        pull_cache: bool = True,
        mutators: dict[str, Mutator] | None = None,
        on_commit: Callable[[str], None] | None = None,
    ) -> None:
        """`client` is a pymongo AsyncMongoClient or a Motor AsyncIOMotorClient."""
        self.client = client
        # Journaled: a push answered 200 is on disk.
        self.write_concern = WriteConcern(w="majority", j=True)
        self.db = client.get_database(db_name, write_concern=self.write_concern)
        self.spaces = self.db.spaces
        self.client_groups = self.db.client_groups
        self.clients = self.db.clients
        self.entries = self.db.entries
        self.group_commit = group_commit
        self.pull_cache = pull_cache
        self.mutators = MUTATORS if mutators is None else mutators
        self.on_commit = on_commit
        self._queues: dict[str, list[_Queued]] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        # Known current version of spaces this process has seen (pull fast path).
        self._versions: dict[str, int] = {}
        # Cross-process commits reach _versions through server/watcher.py: while its change
        # stream is down the fast path is off, and after a gap in it the epoch moves on so
        # pulls begun before the gap do not note what they read.
        self.versions_live = True
        self._versions_epoch = 0
        # clientGroupID -> (spaceID, userID, monotonic time its lastSeen was written),
        # bindings already checked (bounded).
        self._group_space: OrderedDict[str, tuple[str, str | None, float]] = OrderedDict()
        self._exists_checks: dict[str, asyncio.Future[Any]] = {}
        # spaceID -> what this process's last commit to it left (most recent last).
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self.touch_seconds = TOUCH_SECONDS

    async def init(self) -> None:
        await self.entries.create_index([("spaceID", ASCENDING), ("key", ASCENDING)], unique=True)
        await self.entries.create_index([("spaceID", ASCENDING), ("version", ASCENDING)])
        await self.clients.create_index([("clientGroupID", ASCENDING), ("version", ASCENDING)])

    @asynccontextmanager
    async def _session(self) -> Any:
        session = self.client.start_session()
        if inspect.isawaitable(session):  # Motor
            session = await session
        async with session as s:
            yield s

    async def _transaction(self, callback: Callable[[Any], Any]) -> Any:
        """Run callback(session) in a transaction, retried on transient errors."""
        result = None
        runs = 0  # across with_transaction's own retries and ours below

        async def run(session: Any) -> None:
            nonlocal result, runs
            runs += 1
            if runs > 1:
                metrics.transaction_retry()
            try:
                result = await callback(session)
            except OperationFailure as e:
                if e.code == WRITE_CONFLICT:
                    metrics.transaction_conflict()
                raise
            except ServerSelectionTimeoutError as e:
                # Unreachable for the whole selection window: a fresh error without the
                # TransientTransactionError label stops with_transaction retrying for 2 minutes.
                raise ServerSelectionTimeoutError(str(e)) from e

        for attempt in range(3):
            try:
                async with self._session() as s:
                    await s.with_transaction(
                        run, read_concern=ReadConcern("snapshot"), write_concern=self.write_concern
                    )
                return result
            except DuplicateKeyError:
                # Two transactions created the same group or client; the retry sees it.
                metrics.transaction_conflict()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # ---- spaces

    async def create_space(self, space_id: str | None = None) -> str:
        """Create a space (a random id when none is given); 409 if it exists."""
        new_id = space_id or secrets.token_urlsafe(9)
        try:
            await self.spaces.insert_one({"_id": new_id, "version": 0, "created": _now(), "modified": _now()})
        except DuplicateKeyError:
            raise RequestError(409, "SpaceExists", f"space {new_id!r} already exists") from None
        return new_id

    async def space_exists(self, space_id: str) -> bool:
        # Concurrent checks of one space share one query: a burst of poke listeners
        # connecting to a space would otherwise grow the connection pool by the burst.
        pending = self._exists_checks.get(space_id)
        if pending is None:
            pending = asyncio.ensure_future(self.spaces.find_one({"_id": space_id}, {"_id": 1}))
            self._exists_checks[space_id] = pending
            pending.add_done_callback(lambda _: self._exists_checks.pop(space_id, None))
        return await asyncio.shield(pending) is not None

    async def space_version(self, space_id: str) -> int | None:
        doc = await self.spaces.find_one({"_id": space_id}, {"version": 1})
        return None if doc is None else doc["version"]

    # ---- push

    async def push(self, space_id: str, request: PushRequest) -> dict[str, Any]:
        """Queue a push; answered once its transaction committed (or it was refused)."""
        queued = _Queued(request, asyncio.get_running_loop().create_future())
        self._queues.setdefault(space_id, []).append(queued)
        if space_id not in self._runners:
            self._runners[space_id] = asyncio.create_task(self._run(space_id))
        return await queued.future

    async def drain(self) -> None:
        """Wait for every queued push to be answered (graceful shutdown)."""
        while self._runners:
            await asyncio.gather(*self._runners.values(), return_exceptions=True)

    async def _run(self, space_id: str) -> None:
        queue = self._queues[space_id]
        try:
            while queue:
                take = MAX_BATCH_PUSHES if self.group_commit else 1
                batch, queue[:take] = queue[:take], []
                requests = [q.request for q in batch]
                try:
                    results, version, outcomes, known = await self._transaction(
                        lambda s, requests=requests: self._apply(space_id, requests, s)
                    )
                    metrics.batch_committed(len(batch), outcomes, self.mutators)
                    if known is not None:
                        self._keep(space_id, known)
                except _Unchanged as unchanged:  # rolled back: nothing to write
                    results, version = unchanged.results, None
                    metrics.batch_committed(len(batch), unchanged.outcomes, self.mutators)
                except Exception as e:  # every push of the batch gets the same error
                    results, version = [e] * len(batch), None
                if version is not None:
                    self.note_version(space_id, version)
                for q, result in zip(batch, results, strict=True):
                    if q.future.done():  # its caller went away
                        continue
                    if isinstance(result, Exception):
                        q.future.set_exception(result)
                    else:
                        q.future.set_result(result)
                if version is not None and self.on_commit:
                    self.on_commit(space_id)  # after the answers: pushers go before the fan-out
        finally:
            del self._runners[space_id]
            del self._queues[space_id]

    async def _apply(
        self, space_id: str, requests: list[PushRequest], s: Any
    ) -> tuple[list[Any], int | None, list[tuple[str, str]], _Known | None]:
        # Bump the version first: one round trip instead of a read and a write, and a
        # concurrent writer to this space conflicts at once. Rolled back if nothing changed.
        space = await self.spaces.find_one_and_update(
            {"_id": space_id},
            {"$inc": {"version": 1}, "$set": {"modified": _now()}},
            {"version": 1, "created": 1},
            return_document=ReturnDocument.AFTER,
            session=s,
        )
        if space is None:
            raise space_not_found(space_id)
        version, created = space["version"], space.get("created")
        # What our last commit left is what this transaction sees, unless someone else
        # committed since: then read it all. Taken out, so an aborted attempt drops it.
        known = self._known.pop(space_id, None)
        if known is None or (known.created, known.version) != (created, version - 1):
            known = _Known(created, version - 1, {}, {}, {})
        groups, clients = known.groups, known.clients
        group_ids = list({r.client_group_id for r in requests} - groups.keys())
        client_ids = list({m.client_id for r in requests for m in r.mutations} - clients.keys())
        if group_ids:
            async for g in self.client_groups.find({"_id": {"$in": group_ids}}, session=s):
                groups[g["_id"]] = g
        if client_ids:
            async for c in self.clients.find({"_id": {"$in": client_ids}}, session=s):
                clients[c["_id"]] = c
        batch = _Batch(
            space_id=space_id,
            version=version,
            entries=Entries(self.entries, space_id, s, known.entries),
            groups=groups,
            clients=clients,
        )
        results = []
        for request in requests:
            try:
                results.append(await self._apply_push(batch, request))
            except RequestError as e:
                results.append(e)
        if batch.new_groups:
            await self.client_groups.insert_many(
                [batch.groups[g] for g in sorted(batch.new_groups)], ordered=True, session=s
            )
        if batch.touched_groups:
            await self.client_groups.update_many(
                {"_id": {"$in": sorted(batch.touched_groups)}}, {"$set": {"lastSeen": _now()}}, session=s
            )
        entry_ops = batch.entries.operations(batch.version)
        if not entry_ops and not batch.changed_clients:  # nothing changed: the version stays
            if not batch.new_groups and not batch.touched_groups:
                raise _Unchanged(results, batch.outcomes)
            await self.spaces.update_one({"_id": space_id}, {"$inc": {"version": -1}}, session=s)
            return results, None, batch.outcomes, None
        if entry_ops:
            await self.entries.bulk_write(entry_ops, ordered=True, session=s)
        await self.clients.bulk_write(
            [
                UpdateOne(
                    {"_id": cid},
                    {
                        "$set": {
                            "lastMutationID": batch.clients[cid]["lastMutationID"],
                            "version": batch.version,
                            "lastSeen": _now(),
                        },
                        "$setOnInsert": {
                            "clientGroupID": batch.clients[cid]["clientGroupID"],
                            "spaceID": space_id,
                        },
                    },
                    upsert=True,
                )
                for cid in sorted(batch.changed_clients)
            ],
            ordered=True,
            session=s,
        )
        known = _Known(created, version, batch.entries.current, groups, clients)
        return results, version, batch.outcomes, known

    async def _apply_push(self, batch: _Batch, request: PushRequest) -> dict[str, Any]:
        group_id = request.client_group_id
        group = batch.groups.get(group_id)
        if group is not None:
            refusal = _group_refusal(group, batch.space_id, request.user_id)
            if refusal is not None:
                return refusal
        # Check every client before applying anything: a refused push changes nothing.
        first_ids: dict[str, int] = {}
        for m in request.mutations:
            first_ids.setdefault(m.client_id, m.id)
        for cid, first in first_ids.items():
            client = batch.clients.get(cid)
            if client is None:
                if first != 1:  # the server lost this client's state (spec 2.3.4)
                    return CLIENT_STATE_NOT_FOUND
            elif client["clientGroupID"] != group_id:
                raise bad(f"client {cid!r} belongs to another client group", "ClientNotInGroup")
        if group is None:
            batch.groups[group_id] = _new_group(group_id, batch.space_id, request.user_id)
            batch.new_groups.add(group_id)
        elif self._stale(group):
            batch.touched_groups.add(group_id)
            group["lastSeen"] = _now()
        stopped: set[str] = set()
        for m in request.mutations:
            client = batch.clients.setdefault(
                m.client_id, {"_id": m.client_id, "clientGroupID": group_id, "lastMutationID": 0}
            )
            last = client["lastMutationID"]
            if m.client_id in stopped or m.id <= last:
                batch.outcomes.append((m.name, "skipped"))
                continue
            if m.id > last + 1:  # a gap: nothing of this client applies past it
                stopped.add(m.client_id)
                batch.outcomes.append((m.name, "skipped"))
                continue
            await self._run_mutator(batch, m)
            client["lastMutationID"] = m.id
            batch.changed_clients.add(m.client_id)
        return {}

    async def _run_mutator(self, batch: _Batch, m: Any) -> None:
        tx = MutatorTx(batch.entries)
        try:
            mutator = self.mutators.get(m.name)
            if mutator is None:
                raise LookupError(f"unknown mutator {m.name!r}")
            await mutator(tx, m.args)
        except Exception as e:
            # Permanent error: drop its writes, still advance lmid (spec 2.4).
            # Database errors must abort the whole transaction instead.
            if isinstance(e, PyMongoError):
                raise
            log.warning(
                "mutation failed space=%s client=%s id=%d name=%s: %r",
                batch.space_id,
                m.client_id,
                m.id,
                m.name,
                e,
            )
            batch.outcomes.append((m.name, "failed"))
            return
        batch.entries.write(tx.writes)
        batch.outcomes.append((m.name, "applied"))

    # ---- pull

    async def pull(self, space_id: str, request: PullRequest) -> bytes:
        group_id = request.client_group_id
        cookie = request.cookie
        known = self._group_space.get(group_id)
        if (
            self.pull_cache
            and self.versions_live
            and cookie is not None
            and self._versions.get(space_id) == cookie
            and known is not None
            and known[:2] == (space_id, request.user_id)
            and time.monotonic() - known[2] < self.touch_seconds  # else refresh lastSeen below
        ):
            return encode_pull_response(cookie, {}, [])
        epoch = self._versions_epoch
        body, version = await self._transaction(
            lambda s: self._pull(space_id, group_id, cookie, s, request.user_id)
        )
        if version is None:  # refused with a 200 error body
            return body
        if epoch == self._versions_epoch:
            self.note_version(space_id, version)
        self._remember_group(group_id, space_id, request.user_id)
        return body

    async def _pull(
        self, space_id: str, group_id: str, cookie: int | None, s: Any, user_id: str | None = None
    ) -> tuple[bytes, int | None]:
        space = await self.spaces.find_one({"_id": space_id}, {"version": 1}, session=s)
        if space is None:
            raise space_not_found(space_id)
        version = space["version"]
        group = await self.client_groups.find_one({"_id": group_id}, session=s)
        if group is None:
            # Bind the group to this space (and user) on first sight (push or pull).
            await self.client_groups.insert_one(_new_group(group_id, space_id, user_id), session=s)
        else:
            refusal = _group_refusal(group, space_id, user_id)
            if refusal is not None:
                return json.dumps(refusal).encode(), None
            if self._stale(group):
                await self.client_groups.update_one(
                    {"_id": group_id}, {"$set": {"lastSeen": _now()}}, session=s
                )
        ops: list[tuple[str, ...]] = []
        since = cookie
        if cookie is not None and cookie > version:
            # The cookie is from a future this server lost: jump past it and resend all.
            log.warning("space %s: cookie %d ahead of version %d; fast-forwarding", space_id, cookie, version)
            await self.spaces.update_one(
                {"_id": space_id}, {"$set": {"version": cookie + 1, "modified": _now()}}, session=s
            )
            version, since = cookie + 1, None
            ops.append(("clear",))
        if since is None:
            query: dict[str, Any] = {"spaceID": space_id, "deleted": False}
            client_query: dict[str, Any] = {"clientGroupID": group_id}
        else:
            query = {"spaceID": space_id, "version": {"$gt": since}}
            client_query = {"clientGroupID": group_id, "version": {"$gt": since}}
        async for doc in self.entries.find(query, {"key": 1, "value": 1, "deleted": 1}, session=s).sort(
            "key", ASCENDING
        ):
            ops.append(("del", doc["key"]) if doc["deleted"] else ("put", doc["key"], doc["value"]))
        lmids = {
            doc["_id"]: doc["lastMutationID"]
            async for doc in self.clients.find(client_query, {"lastMutationID": 1}, session=s)
        }
        return encode_pull_response(version, lmids, ops), version

    def note_version(self, space_id: str, version: int) -> None:
        """A committed version: this process's, or one seen on the change stream.
        max(): a pull that read an older snapshot must not move the cache back."""
        self._versions[space_id] = max(version, self._versions.get(space_id, version))

    def forget_space(self, space_id: str) -> None:
        self._versions.pop(space_id, None)
        self._known.pop(space_id, None)

    def _keep(self, space_id: str, known: _Known) -> None:
        if max(len(known.entries), len(known.groups), len(known.clients)) > KNOWN_MAX:
            return  # a space this busy is read afresh
        self._known[space_id] = known
        if len(self._known) > KNOWN_SPACES:
            self._known.popitem(last=False)

    def known_version(self, space_id: str) -> int | None:
        """The newest committed version of the space this process knows of, if any."""
        return self._versions.get(space_id)

    def forget_versions(self) -> None:
        """The change stream missed commits: no known version can be trusted."""
        self._versions.clear()
        self._versions_epoch += 1

    def _stale(self, group: dict[str, Any]) -> bool:
        seen = group.get("lastSeen") or group["created"]
        if seen.tzinfo is None:  # BSON dates come back naive (UTC)
            seen = seen.replace(tzinfo=UTC)
        return (_now() - seen).total_seconds() >= self.touch_seconds

    def forget_group(self, group_id: str) -> None:
        self._group_space.pop(group_id, None)

    def _remember_group(self, group_id: str, space_id: str, user_id: str | None = None) -> None:
        # The slow path refreshed lastSeen unless it was fresh: either way it is recent.
        self._group_space[group_id] = (space_id, user_id, time.monotonic())
        self._group_space.move_to_end(group_id)
        if len(self._group_space) > GROUP_CACHE_SIZE:
            self._group_space.popitem(last=False)
