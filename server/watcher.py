"""Pokes across processes: one change stream per process on the `spaces` collection.

Every push commit bumps its space document's version, so the stream carries one event per
commit made by any process on the database. The watcher notes the version in the store's
cache (the pull fast path) and pokes the local listeners of that space. Local commits poke
directly (lower latency) through the watcher, which remembers the version it poked for and
skips the event of that commit: a listener gets one poke per commit, never a missed one.

Resume: the watcher keeps the stream's resume token. On a network error or an election it
reopens the stream from the token, so no commit is missed. When the database refuses the
token (history lost), it opens a fresh stream, forgets every cached version and pokes every
space with local listeners: they pull and lose nothing. While no stream is open, the pull
fast path is off.

Pull fast path rule (pull_cache_safe): it answers from versions this process knows, which
is right only when the process sees every commit: its own when it is the only process, or
everyone's through this watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError

from server.pokes import PokeHub
from server.store import Store

log = logging.getLogger(__name__)

# Only what the watcher reads: which space, and its new version.
PIPELINE: list[dict[str, Any]] = [
    {"$match": {"operationType": {"$in": ["insert", "update", "replace", "delete"]}}},
    {
        "$project": {
            "operationType": 1,
            "documentKey": 1,
            "fullDocument.version": 1,
            "updateDescription.updatedFields.version": 1,
        }
    },
]
MAX_AWAIT_MS = 1000  # an idle getMore returns after this; events return at once
RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds between reopen attempts (doubling)
POKED_MEMORY = 10_000  # spaces whose last poked version is kept (forgetting one costs a duplicate)


def pull_cache_safe(processes: int, watching: bool) -> bool:
    """May the pull fast path be used? Only if this process sees every commit."""
    return watching or processes == 1


async def change_streams_supported(uri: str, db_name: str) -> bool:
    """Can this database open a change stream? (Not a standalone mongod.)

    A connection failure is raised: the server cannot start without its database."""
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        stream = await client[db_name].spaces.watch(PIPELINE)
        await stream.close()
        return True
    except OperationFailure as e:
        log.warning("this database has no change streams: %s", e)
        return False
    finally:
        await client.close()


class Watcher:
    """open() before serving (so no commit after it is missed), then start(); close()."""

    def __init__(self, store: Store, hub: PokeHub) -> None:
        self.store = store
        self.hub = hub
        self.token: Any = None  # the resume token of the last event or empty batch seen
        self._stream: Any = None
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        # space -> a version its local listeners were poked after (all up to it committed)
        self._poked: OrderedDict[str, int] = OrderedDict()
        store.versions_live = False  # until a stream is open
        store.on_commit = self.local_commit  # local commits poke through here

    async def open(self) -> None:
        """Open the stream: from the resume token when there is one, else afresh."""
        collection = self.store.spaces
        if self.token is not None:
            try:
                self._stream = await collection.watch(
                    PIPELINE, resume_after=self.token, max_await_time_ms=MAX_AWAIT_MS
                )
                self.store.versions_live = True
                log.info("change stream resumed")
                return
            except OperationFailure as e:  # a network error propagates: retry the token later
                log.warning("change stream cannot resume (%s); starting afresh", e)
                self.token = None
        self._stream = await collection.watch(PIPELINE, max_await_time_ms=MAX_AWAIT_MS)
        self.token = self._stream.resume_token
        # Commits before this point were not seen: nothing cached holds, every listener pulls.
        self.store.forget_versions()
        self.store.versions_live = True
        self._poked.clear()  # a space deleted and created again unseen restarts its versions
        spaces = self.hub.space_ids()
        for space_id in spaces:
            self._poke(space_id, None)
        if self._opened:
            log.warning("change stream opened afresh; poked %d spaces with listeners", len(spaces))
        else:
            log.info("change stream opened on %s", collection.full_name)
        self._opened = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close_stream()

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                if self._stream is None:
                    await self.open()
                    delay = RETRY_FIRST
                while self._stream.alive:
                    change = await self._stream.try_next()
                    self.token = self._stream.resume_token
                    if change is not None:
                        self.apply(change)
                # Invalidated (collection dropped or renamed): its token cannot resume.
                log.warning("change stream invalidated; starting afresh")
                self.token = None
                await self._close_stream()
            except Exception as e:  # not only PyMongoError: the watcher must not die
                if self._stream is not None:
                    self.token = self._stream.resume_token
                self.store.versions_live = False
                await self._close_stream()
                log.warning(
                    "change stream interrupted (%s); reopening in %.1f s",
                    e,
                    delay,
                    exc_info=not isinstance(e, PyMongoError),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    def apply(self, change: dict[str, Any]) -> None:
        """One event: note the space's new version, then poke its local listeners."""
        space_id = (change.get("documentKey") or {}).get("_id")
        if not isinstance(space_id, str):
            return
        kind = change.get("operationType")
        if kind in ("insert", "delete"):  # a space's versions (re)start
            self._poked.pop(space_id, None)
        if kind == "delete":
            self.store.forget_space(space_id)
            self._poke(space_id, None)
            return
        if kind == "update":
            version = ((change.get("updateDescription") or {}).get("updatedFields") or {}).get("version")
        else:
            version = (change.get("fullDocument") or {}).get("version")
        if not isinstance(version, int):
            return  # a change that is not a commit
        self.store.note_version(space_id, version)
        if kind == "insert":
            return  # a new space: nothing to pull yet
        if self._poked.get(space_id, -1) < version:  # else a local commit's poke came after it
            self._poke(space_id, version)

    def local_commit(self, space_id: str) -> None:
        """The store's commit hook: poke at once, unless the commit's event came first."""
        version = self.store.known_version(space_id)
        if version is None or self._poked.get(space_id, -1) < version:
            self._poke(space_id, version)

    def _poke(self, space_id: str, version: int | None) -> None:
        if self.hub.listener_count(space_id) == 0:
            self._poked.pop(space_id, None)
            return
        self.hub.poke(space_id)
        if version is not None:
            self._poked[space_id] = max(version, self._poked.get(space_id, version))
            self._poked.move_to_end(space_id)
            if len(self._poked) > POKED_MEMORY:
                self._poked.popitem(last=False)

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(PyMongoError):  # the connection may be gone already
                await stream.close()
