"""Push batches: queued pushes (and server-side writes) applied together in one transaction.

One runner per queue takes everything queued while the last transaction ran (group commit,
at most MAX_BATCH items). With `across_spaces` the queue is shared by all spaces, so pushes
to different spaces share a transaction too; each space's version moves once per batch.

A steady batch costs two round trips: one ordered `update` command carrying every
space's head bump, entries, clients and groups, then the commit. It writes from what this
process's last commit to each space left (SpaceState); bump() fails if anyone else moved a
head since, and the attempt runs again reading what it needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import PyMongoError

from server import metrics
from server.mutators import Mutator
from server.protocol import CLIENT_STATE_NOT_FOUND, Mutation, PushRequest, RequestError, space_not_found
from server.store import schema
from server.store.caches import Owner, Owners, Seen, SpaceState, SpaceStates, Versions
from server.store.db import Database, Retry
from server.store.queue import BatchQueue
from server.store.tx import Entries, MutatorTx

log = logging.getLogger(__name__)

MAX_BATCH = 200  # pushes in one transaction
HEAD_FIELDS = {"version": 1, "base": 1, "deleted": 1}
TRANSACTIONS = 4  # batches committing at once (server/store/queue.py says why)

Write = Callable[[MutatorTx], Awaitable[None]]


@dataclass
class Queued:
    space_id: str
    future: asyncio.Future[Any]
    request: PushRequest | None = None  # a client's push
    write: Write | None = None  # or a server-side write (admin API): answered with the version


@dataclass
class SpaceBatch:
    """One space's part of a transaction attempt."""

    space_id: str
    state: SpaceState | None  # None: the space does not exist (deleted: CSN, else 404)
    deleted: bool = False
    cached: bool = False  # `state` is what our last commit left, not read in this transaction
    start_version: int = -1  # the version the attempt found
    entries: Entries | None = None
    lmids: dict[tuple[str, str], int] = field(default_factory=dict)
    changed_clients: set[tuple[str, str]] = field(default_factory=set)
    new_groups: dict[str, str | None] = field(default_factory=dict)  # group -> user
    touched_groups: set[str] = field(default_factory=set)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (mutator, error) to log


@dataclass
class Outcome:
    results: list[Any]
    batches: dict[str, SpaceBatch]
    owners: dict[str, Owner]
    outcomes: list[tuple[str, str]]  # (mutator name, applied|failed|skipped)


class Pusher:
    def __init__(
        self,
        db: Database,
        *,
        states: SpaceStates,
        owners: Owners,
        versions: Versions,
        mutators: dict[str, Mutator],
        on_commit: Callable[[str, int], None] | None,
        group_commit: bool,
        across_spaces: bool,
        seen: Seen,
        touch_seconds: Callable[[], float],
        max_mutations: int,
        on_new_group: Callable[[str | None], None],
    ) -> None:
        self.db = db
        self.states = states
        self.owners = owners
        self.versions = versions
        self.mutators = mutators
        self.on_commit = on_commit
        self.seen = seen
        self.touch_seconds = touch_seconds
        self.max_mutations = max_mutations
        self.on_new_group = on_new_group  # called with its user after a new group's commit
        self._queue = BatchQueue(
            self._commit,
            batch=MAX_BATCH if group_commit else 1,
            across_spaces=across_spaces,
            transactions=TRANSACTIONS,
        )

    async def push(self, space_id: str, request: PushRequest) -> dict[str, Any]:
        """Answered once its transaction committed (or it was refused)."""
        return await self._enqueue(Queued(space_id, _future(), request=request))

    async def write(self, space_id: str, write: Write) -> int:
        """Run `write` in the space as the server; answered with the version after commit."""
        return await self._enqueue(Queued(space_id, _future(), write=write))

    async def drain(self) -> None:
        """Wait for every queued item to be answered (graceful shutdown)."""
        await self._queue.drain()

    async def _enqueue(self, item: Queued) -> Any:
        self._queue.put(item)
        return await item.future

    async def _commit(self, batch: list[Queued]) -> None:
        try:
            done = await self.db.transaction(lambda s: self._attempt(batch, s))
        except Exception as e:  # every item of the batch gets the same error
            _answer(batch, [e] * len(batch))
            return
        metrics.batch_committed(len(batch), done.outcomes, self.mutators)
        moved = []
        for space_id, part in done.batches.items():
            _log_failures(part)
            if part.state is None:
                continue
            if part.state.version > part.start_version:
                moved.append((space_id, part.state.version))
            self.states.keep(space_id, part.state)
            self.versions.note(space_id, part.state.version)
        for group_id, owner in done.owners.items():
            self.owners.put(group_id, owner)
        now = time.monotonic()
        for part in done.batches.values():
            for group_id in (*part.new_groups, *part.touched_groups):  # their lastSeen was written
                self.seen.put(group_id, now)
        _answer(batch, done.results)
        for part in done.batches.values():
            for user_id in part.new_groups.values():
                self.on_new_group(user_id)
        if self.on_commit is not None:
            for space_id, version in moved:  # after the answers: pushers go before the fan-out
                self.on_commit(space_id, version)

    async def _attempt(self, batch: list[Queued], s: Any) -> Outcome:
        when = schema.now()
        # Owners known before the transaction's first read were committed before its snapshot.
        groups = {i.request.client_group_id for i in batch if i.request is not None}
        owners = {g: o for g in groups if (o := self.owners.get(g)) is not None}
        parts = await self._read(batch, s)
        await self._read_owners(owners, groups, s)
        done = Outcome([], parts, {}, [])
        for item in batch:
            part = parts[item.space_id]
            try:
                if part.state is None:
                    # A deleted space's old tabs start over (and find it gone); else 404.
                    owner = owners.get(item.request.client_group_id) if item.request is not None else None
                    old_tab = part.deleted and owner is not None and owner.space_id == item.space_id
                    result: Any = CLIENT_STATE_NOT_FOUND if old_tab else space_not_found(item.space_id)
                elif item.request is not None:
                    result = await self._apply_push(part, item.request, owners, done, when)
                else:
                    assert item.write is not None
                    await self._apply_write(part, item.write)
                    result = part  # the version is known after the batch
            except RequestError as e:
                result = e
            done.results.append(result)
        ops, heads = [], {}
        for part in parts.values():
            heads.update(await self._operations(part, ops, when))
        new_owners = [
            schema.owner(g, p.space_id, u, when) for p in parts.values() for g, u in p.new_groups.items()
        ]
        if new_owners:  # a duplicate key (another process made the group) runs the attempt again
            await self.db.owners.insert_many(new_owners, ordered=True, session=s)
        touched = [schema.touch_owner(g, when) for p in parts.values() for g in sorted(p.touched_groups)]
        if touched:  # at most once per group and touch interval (client expiry reads it)
            await self.db.owners.bulk_write(touched, ordered=True, session=s)
        if ops:  # a duplicate key (a head moved meanwhile) runs the attempt again
            written = await self.db.data.bulk_write(ops, ordered=True, session=s)
            if any(i in heads for i in written.upserted_ids):
                raise Retry  # a head was gone: read again, and answer what is there now
        done.owners = owners  # kept once committed: an owner never changes
        done.results = [r.state.version if isinstance(r, SpaceBatch) else r for r in done.results]
        return done

    async def _read(self, batch: list[Queued], s: Any) -> dict[str, SpaceBatch]:
        """Each space's state: kept from our last commit, or read (heads in one query)."""
        parts: dict[str, SpaceBatch] = {}
        for item in batch:
            if item.space_id not in parts:
                state = self.states.take(item.space_id)
                parts[item.space_id] = SpaceBatch(item.space_id, state, cached=state is not None)
        for part in parts.values():
            if part.state is None:  # not kept: read its head (a point read)
                h = await self.db.data.find_one(schema.head(part.space_id), HEAD_FIELDS, session=s)
                part.deleted = h is not None and bool(h.get("deleted"))
                if h is not None and not part.deleted:
                    part.state = SpaceState(h["version"], h.get("base", 0))
        for part in parts.values():
            if part.state is None:
                continue
            part.start_version = part.state.version
            wanted = {
                i.request.client_group_id
                for i in batch
                if i.request is not None and i.space_id == part.space_id
            } - part.state.groups.keys()
            if wanted:
                query = {"space": part.space_id, "kind": schema.GROUP, "key": {"$in": sorted(wanted)}}
                async for d in self.db.data.find(query, session=s):
                    if d["sub"]:
                        part.state.clients[(d["key"], d["sub"])] = d
                    else:
                        part.state.groups[d["key"]] = d
            part.entries = Entries(self.db.data, part.space_id, s, part.state.entries)
            for (group_id, client_id), doc in part.state.clients.items():
                part.lmids[(group_id, client_id)] = doc["lmid"]
        return parts

    async def _read_owners(self, owners: dict[str, Owner], groups: set[str], s: Any) -> None:
        """Add the owners of `groups` not known yet, read in the transaction."""
        unknown = sorted(groups - owners.keys())
        if unknown:
            async for d in self.db.owners.find({"_id": {"$in": unknown}}, session=s):
                owners[d["_id"]] = Owner(d["space"], d.get("user"))

    async def _apply_push(
        self, part: SpaceBatch, request: PushRequest, owners: dict[str, Owner], done: Outcome, when: Any
    ) -> dict[str, Any]:
        state = part.state
        assert state is not None and part.entries is not None
        group_id, user_id = request.client_group_id, request.user_id
        owner = owners.get(group_id)
        if owner is not None:
            if not owner.admits(part.space_id, user_id):
                # Seen in another space or as another user: this client starts over; the
                # group's real owner keeps everything.
                return CLIENT_STATE_NOT_FOUND
            group = state.groups.get(group_id)
            if group is None or schema.is_removed(group):
                return CLIENT_STATE_NOT_FOUND
        # Every client must be able to go on before anything applies: a refused push changes nothing.
        first: dict[str, int] = {}
        for m in request.mutations:
            first.setdefault(m.client_id, m.id)
        for client_id, first_id in first.items():
            if first_id > part.lmids.get((group_id, client_id), 0) + 1:
                if part.cached:  # another process may have moved on since: read, then decide
                    raise Retry
                # Mutations this server never saw (it lost state, e.g. a restored backup).
                return CLIENT_STATE_NOT_FOUND
        if owner is None and group_id not in part.new_groups:
            part.new_groups[group_id] = user_id
            owners[group_id] = Owner(part.space_id, user_id)
            state.groups[group_id] = {"key": group_id, "sub": "", "user": user_id}
        elif group_id not in part.new_groups and self.seen.due(
            group_id, self.touch_seconds(), time.monotonic()
        ):
            part.touched_groups.add(group_id)
        stopped: set[str] = set()
        applied = 0
        for m in request.mutations:
            key = (group_id, m.client_id)
            last = part.lmids.get(key, 0)
            if m.client_id in stopped or m.id <= last:
                done.outcomes.append((m.name, "skipped"))
                continue
            if m.id > last + 1:  # a gap inside one push: nothing of this client applies past it
                stopped.add(m.client_id)
                done.outcomes.append((m.name, "skipped"))
                continue
            if applied == self.max_mutations:  # early exit: the rest come in the next push
                break
            applied += 1
            done.outcomes.append((m.name, await self._run_mutator(part, m)))
            part.lmids[key] = m.id
            part.changed_clients.add(key)
        return {}

    async def _run_mutator(self, part: SpaceBatch, m: Mutation) -> str:
        assert part.entries is not None
        tx = MutatorTx(part.entries)
        try:
            if m.problem:
                raise ValueError(m.problem)
            mutator = self.mutators.get(m.name)
            if mutator is None:
                raise LookupError(f"unknown mutator {m.name!r}")
            await mutator(tx, m.args)
        except PyMongoError:
            raise  # the database failed: the whole transaction stops
        except Exception as e:
            # A permanent error: its writes are dropped and its lmid still advances (spec 2.4).
            part.failures.append((m.name, repr(e)))
            return "failed"
        part.entries.write(tx.writes)
        return "applied"

    async def _apply_write(self, part: SpaceBatch, write: Write) -> None:
        assert part.entries is not None
        tx = MutatorTx(part.entries)
        try:
            await write(tx)
        except (RequestError, PyMongoError):
            raise
        except Exception as e:
            raise RequestError(400, "MutationFailed", f"{type(e).__name__}: {e}") from None
        part.entries.write(tx.writes)

    async def _operations(self, part: SpaceBatch, ops: list[Any], when: Any) -> dict[int, str]:
        """Append the space's writes to `ops`; returns {index of its head bump: space}."""
        state, entries = part.state, part.entries
        if state is None or entries is None:
            return {}
        await entries.load(sorted(entries.dirty))  # whether blind writes hit a live key
        changes = entries.changes()
        heads = {}
        if changes or part.changed_clients:
            seen, state.version = state.version, state.version + 1
            heads[len(ops)] = part.space_id
            ops.append(schema.bump(part.space_id, seen, when, entries=entries.live_delta()))
            for key, value in changes:
                if value is None:
                    ops.append(schema.delete_entry(part.space_id, key, state.version))
                else:
                    ops.append(schema.put_entry(part.space_id, key, value, state.version))
            for group_id, client_id in sorted(part.changed_clients):
                lmid = part.lmids[(group_id, client_id)]
                ops.append(schema.set_client(part.space_id, group_id, client_id, lmid, state.version, when))
                state.clients[(group_id, client_id)] = {"lmid": lmid, "version": state.version}
        for group_id, user_id in part.new_groups.items():
            ops.append(schema.new_group(part.space_id, group_id, user_id, state.version, when))
        state.entries = dict(entries.current)
        return heads


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


def _answer(batch: list[Queued], results: list[Any]) -> None:
    for item, result in zip(batch, results, strict=True):
        if item.future.done():  # its caller went away
            continue
        if isinstance(result, BaseException):
            item.future.set_exception(result)
        else:
            item.future.set_result(result)


def _log_failures(part: SpaceBatch) -> None:
    """One line per space and batch, however many mutations failed (a client can send 1000)."""
    if not part.failures:
        return
    kinds = Counter(name for name, _ in part.failures)
    name, error = part.failures[0]
    log.warning(
        "%d mutations failed in space %s (%s); first: %r: %s",
        len(part.failures),
        part.space_id,
        ", ".join(f"{n!r} x{c}" for n, c in kinds.most_common(5)),
        name,
        error[:200],
    )
