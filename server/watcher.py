"""Pokes across processes: one change stream per process on the spaces' head documents.

Every commit to a space moves its head's version, so the stream carries one event per
commit made by any process on the database. The watcher pokes the local listeners of that
space. A local commit pokes at once through local_commit (the store's commit hook), and the
watcher remembers the version it poked for, so the event of that commit is skipped: a
listener gets one poke per commit, never a missed one.

Resume: the watcher keeps the stream's resume token. On a network error or an election it
reopens the stream from the token, so no commit is missed. When the database refuses the
token (history lost), it opens a fresh stream and pokes every space with local listeners:
they pull and lose nothing.

Pulls do not depend on the watcher: with more than one process, every pull reads the
database (server/store/pull.py), so no answer waits on an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError

from server.lifecycle import stop_task
from server.pokes import PokeHub
from server.store import Store, schema

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds between reopen attempts (doubling)
POKED_MEMORY = 10_000  # spaces whose last poked version is kept (forgetting one costs a duplicate)


async def change_streams_supported(uri: str, db_name: str) -> bool:
    """Can this database open a change stream? (Not a standalone mongod.)

    A connection failure is raised: the server cannot start without its database."""
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        stream = await client[db_name][schema.DATA].watch(schema.HEAD_EVENTS)
        await stream.close()
        return True
    except OperationFailure as e:
        log.warning("this database has no change streams: %s", e)
        return False
    finally:
        await client.close()


class Watcher:
    """Watcher(hub) first, so the store can be made with on_commit=watcher.local_commit;
    then open(store) before serving (no commit after it is missed), start(); close()."""

    def __init__(self, hub: PokeHub) -> None:
        self.hub = hub
        self.store: Store | None = None
        self.token: Any = None  # the resume token of the last event or empty batch seen
        # Test hook: seconds each event waits before it is applied (a slow change stream,
        # to show that no answer waits on it).
        self.delay = float(os.environ.get("REPLICACHE_TEST_WATCHER_DELAY", "0"))
        self._stream: Any = None
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        # space -> a version its local listeners were poked after (all up to it committed)
        self._poked: OrderedDict[str, int] = OrderedDict()

    async def open(self, store: Store | None = None) -> None:
        """Open the stream: from the resume token when there is one, else afresh."""
        self.store = store or self.store
        assert self.store is not None
        if self.token is not None:
            try:
                self._stream = await self.store.watch_heads(resume_after=self.token)
                log.info("change stream resumed")
                return
            except OperationFailure as e:  # a network error propagates: retry the token later
                log.warning("change stream cannot resume (%s); starting afresh", e)
                self.token = None
        self._stream = await self.store.watch_heads()
        self.token = self._stream.resume_token
        # Commits before this point were not seen: every listener pulls.
        self._poked.clear()
        spaces = self.hub.space_ids()
        for space_id in spaces:
            self._poke(space_id, None)
        if self._opened:
            log.warning("change stream opened afresh; poked %d spaces with listeners", len(spaces))
        else:
            log.info("change stream opened")
        self._opened = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
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
                        if self.delay:
                            await asyncio.sleep(self.delay)
                        self.apply(change)
                # Invalidated (collection dropped or renamed): its token cannot resume.
                log.warning("change stream invalidated; starting afresh")
                self.token = None
                await self._close_stream()
            except Exception as e:  # not only PyMongoError: the watcher must not die
                if self._stream is not None:
                    self.token = self._stream.resume_token
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
        """One event: poke the space's local listeners, unless a local commit did already."""
        space_id = (change.get("documentKey") or {}).get("_id")
        if not isinstance(space_id, str) or change.get("operationType") != "update":
            return  # a new space has nothing to pull yet
        fields = (change.get("updateDescription") or {}).get("updatedFields") or {}
        version = fields.get("version")
        if not isinstance(version, int):
            return  # a change that is not a commit
        if self._poked.get(space_id, -1) < version:  # else a local commit's poke came after it
            self._poke(space_id, version)
        if fields.get("deleted") is True:
            self.hub.end(space_id)

    def local_commit(self, space_id: str, version: int) -> None:
        """The store's commit hook: poke at once, unless the commit's event came first."""
        if self._poked.get(space_id, -1) < version:
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
