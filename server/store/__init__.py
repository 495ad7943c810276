"""MongoDB persistence for Replicache spaces: push, pull, a space's life, client expiry.

Store is the one door: handlers, the admin API and background tasks call its methods and
never touch collections. The modules behind it, one job each:

  schema.py   the stored documents, their addresses, and bump(), the one way to move a
              space's version (every write to space data goes through it)
  db.py       collections, indexes, schema version, transactions with retries
  migrate.py  databases written by an older schema, migrated at start
  caches.py   what this process remembers between requests (each bounded)
  push.py     push batches (group commit, across spaces) and server-side writes
  tx.py       what a mutator sees inside a batch
  pull.py     pull
  spaces.py   create, exists, delete, restore
  expiry.py   removing idle client groups
  admin.py    read-only queries for the admin inspector
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from server.mutators import MUTATORS, Mutator
from server.protocol import MAX_MUTATIONS, PullRequest, PushRequest
from server.store import expiry, schema
from server.store.admin import AdminQueries
from server.store.caches import Owners, Seen, SpaceStates, Versions
from server.store.db import Database, SchemaTooNew
from server.store.pull import Puller
from server.store.push import Pusher, Write
from server.store.spaces import Spaces

__all__ = ["SchemaTooNew", "Store", "Write"]

log = logging.getLogger(__name__)

TOUCH_SECONDS = 3600.0  # a group's lastSeen is refreshed when older than this
DEFAULT_CLIENT_TTL = 30 * 86400.0
MAX_AWAIT_MS = 1000  # an idle change stream getMore returns after this; events return at once


class Store:
    def __init__(
        self,
        client: Any,
        db_name: str = "replicache",
        *,
        group_commit: bool = True,
        pull_cache: bool = True,
        sole_writer: bool = True,
        mutators: dict[str, Mutator] | None = None,
        on_commit: Callable[[str, int], None] | None = None,
        client_ttl_seconds: float = DEFAULT_CLIENT_TTL,
        max_mutations: int = MAX_MUTATIONS,
        max_groups_per_user: int = 0,
    ) -> None:
        """`client`: a pymongo AsyncMongoClient or a Motor AsyncIOMotorClient.

        sole_writer: no other process writes this database (one process on its own embedded
        database), so unchanged pulls may be answered from memory (with pull_cache).
        on_commit(space_id, version): called after each commit that moved a space's version.
        client_ttl_seconds: idle client groups may be removed after this (0: never); their
        lastSeen is refreshed well within it.
        max_mutations: new mutations applied from one push; the client sends the rest again.
        max_groups_per_user: live client groups one user (with auth) keeps; each new group of a
        user past it removes their least recently seen ones, in the background (0: no cap)."""
        self.db = Database(client, db_name)
        self._mutators = MUTATORS if mutators is None else mutators
        self.on_commit = on_commit
        self.touch_seconds = (
            min(TOUCH_SECONDS, client_ttl_seconds / 10) if client_ttl_seconds > 0 else TOUCH_SECONDS
        )
        self._states, self._owners, self._versions, self._seen = SpaceStates(), Owners(), Versions(), Seen()
        self._spaces = Spaces(self.db)
        self._group_commit = group_commit
        self._max_mutations = max_mutations
        self._max_groups_per_user = max_groups_per_user
        self._capping: dict[str, asyncio.Task[int]] = {}  # user -> cap_user_groups running
        self._cap_again: set[str] = set()  # users with a new group since their run began
        self._pusher = self._make_pusher(across_spaces=True)
        self._puller = Puller(
            self.db,
            owners=self._owners,
            versions=self._versions,
            seen=self._seen,
            cache=pull_cache and sole_writer,
            touch_seconds=lambda: self.touch_seconds,
            on_new_group=self._new_group,
        )
        self.admin = AdminQueries(self.db)

    def _make_pusher(self, across_spaces: bool) -> Pusher:
        return Pusher(
            self.db,
            states=self._states,
            owners=self._owners,
            versions=self._versions,
            mutators=self._mutators,
            on_commit=self.on_commit,
            group_commit=self._group_commit,
            across_spaces=across_spaces,
            seen=self._seen,
            touch_seconds=lambda: self.touch_seconds,
            max_mutations=self._max_mutations,
            on_new_group=self._new_group,
        )

    @property
    def mutators(self) -> dict[str, Mutator]:
        return self._mutators

    @mutators.setter
    def mutators(self, mutators: dict[str, Mutator]) -> None:
        self._mutators = self._pusher.mutators = mutators

    async def init(self) -> None:
        """Schema check, migration, indexes; and how to batch (see docs/operations.md)."""
        await self.db.init()
        hello = await self.db.client.admin.command("hello")
        if hello.get("msg") == "isdbgrid":
            # A sharded cluster: a batch across spaces would be a cross-shard transaction.
            self._pusher = self._make_pusher(across_spaces=False)
            log.info("sharded cluster: push batches stay within one space")

    def collection(self, name: str) -> Any:
        """A collection of this database for another module's own records (admin sessions);
        never one of the store's (schema.DATA, OWNERS, META)."""
        if name in (schema.DATA, schema.OWNERS, schema.META):
            raise ValueError(f"{name} belongs to the store")
        return self.db.db[name]

    async def ping(self) -> None:
        """Raises unless the database answers."""
        await self.db.ping()

    # ---- sync

    async def push(self, space_id: str, request: PushRequest) -> dict[str, Any]:
        return await self._pusher.push(space_id, request)

    async def pull(self, space_id: str, request: PullRequest) -> bytes:
        return await self._puller.pull(space_id, request)

    async def write(self, space_id: str, write: Write) -> int:
        """Run `write(tx)` in the space as the server (admin API): one transaction, the version
        moves if anything changed, listeners are poked after the commit. Returns the version."""
        return await self._pusher.write(space_id, write)

    async def drain(self) -> None:
        """Wait for every queued push to be answered, and for the groups caps they set off
        (graceful shutdown)."""
        await self._pusher.drain()
        while self._capping:  # a run may start another (a group made meanwhile)
            await asyncio.gather(*self._capping.values(), return_exceptions=True)

    # ---- spaces

    async def create_space(self, space_id: str | None = None) -> str:
        """Create a space (a random id when none is given); 409 if it exists."""
        new_id, version = await self._spaces.create(space_id)
        if version is not None:
            self._committed(new_id, version)
        return new_id

    async def space_exists(self, space_id: str) -> bool:
        return await self._spaces.exists(space_id)

    async def space_version(self, space_id: str) -> int | None:
        return await self._spaces.version(space_id)

    async def delete_space(self, space_id: str) -> None:
        """Delete a space and everything in it (404 if there is none); its old tabs start over."""
        version = await self._spaces.delete(space_id)
        self._committed(space_id, version)
        self._versions.pop(space_id)  # no pull is answered from memory: they find it gone

    async def restore_space(self, space_id: str, entries: list[tuple[str, str]], *, create: bool) -> int:
        """Replace a space's entries (key, JSON text) in one transaction; every client group it
        had starts over. Returns the new version."""
        version = await self._spaces.restore(space_id, entries, create=create)
        self._committed(space_id, version)
        return version

    async def watch_heads(self, resume_after: Any = None) -> Any:
        """A change stream with one event per commit to any space (schema.HEAD_EVENTS): the
        space id is the event's documentKey._id, its new version updatedFields.version."""
        stream = self.db.data.watch(
            schema.HEAD_EVENTS, resume_after=resume_after, max_await_time_ms=MAX_AWAIT_MS
        )
        return await stream if inspect.isawaitable(stream) else stream  # Motor's is not awaited

    # ---- client expiry

    async def expire_groups(self, ttl_seconds: float, now: datetime | None = None) -> int:
        """Remove every client group idle for ttl_seconds (as of `now`); returns how many."""
        cutoff = expiry.cutoff_for(ttl_seconds, now)
        return await self._remove_groups(await expiry.idle_groups(self.db, cutoff), cutoff)

    async def cap_user_groups(self, user_id: str) -> int:
        """Remove the user's least recently seen client groups past max_groups_per_user (they
        start over, as expired ones do); returns how many."""
        found, cutoff = await expiry.over_cap(self.db, user_id, self._max_groups_per_user)
        return await self._remove_groups(found, cutoff) if cutoff is not None else 0

    async def _remove_groups(self, found: dict[str, list[str]], cutoff: datetime) -> int:
        removed = 0
        for space_id, groups in found.items():
            count, version = await expiry.remove(self.db, space_id, groups, cutoff)
            removed += count
            if version is not None:
                self._committed(space_id, version)
        return removed

    def _new_group(self, user_id: str | None) -> None:
        """A group was bound to user_id (after its commit): cap the user's groups, once at a
        time per user (a group made meanwhile runs it again after). A user whose groups are at
        the cap pays one read of their group records and one removal per new group; anonymous
        groups (auth off) have no cap."""
        if user_id is None or not self._max_groups_per_user:
            return
        if user_id in self._capping:
            self._cap_again.add(user_id)
            return
        task = asyncio.create_task(self.cap_user_groups(user_id))
        self._capping[user_id] = task
        task.add_done_callback(lambda t: self._capped(user_id, t))

    def _capped(self, user_id: str, task: asyncio.Task[int]) -> None:
        del self._capping[user_id]
        if not task.cancelled() and task.exception() is not None:
            log.warning("capping the client groups of a user failed: %s", task.exception())
        if user_id in self._cap_again:
            self._cap_again.discard(user_id)
            self._new_group(user_id)

    def _committed(self, space_id: str, version: int) -> None:
        """A commit made outside the push batches: forget what the batches kept of the space."""
        self._states.pop(space_id)
        self._versions.note(space_id, version)
        if self.on_commit is not None:
            self.on_commit(space_id, version)
