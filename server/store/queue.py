"""Where pushes wait for a transaction: group commit, across spaces, several at once.

A runner takes everything queued that it may (at most `batch` items), commits it as one
transaction, and takes again. Up to `transactions` runners work at once, never two on the
same space, so a space's pushes keep their order and never conflict with each other in one
process. Several at once because the commit is what a push waits on most: with
--sync-on-commit the embedded database flushes its log on every commit, and a flush
overlaps with the next batch's work; one runner at a time left 20 writers on 20 spaces at
60 pushes/s on this 2-core machine (see docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class Item(Protocol):
    space_id: str


class BatchQueue:
    def __init__(
        self,
        commit: Callable[[list[Any]], Awaitable[None]],
        *,
        batch: int,
        across_spaces: bool,
        transactions: int,
    ) -> None:
        """across_spaces False: a batch holds one space's items (a sharded cluster)."""
        self._commit = commit
        self.batch = batch
        self.across_spaces = across_spaces
        self.transactions = transactions
        self._items: list[Any] = []
        self._busy: set[str] = set()  # spaces in a running transaction
        self._runners: set[asyncio.Task[None]] = set()
        self._starting = False  # a runner that has not taken its batch yet: it takes all it may

    def put(self, item: Item) -> None:
        self._items.append(item)
        self._start()

    async def drain(self) -> None:
        """Wait until every item was committed or refused (graceful shutdown)."""
        while self._runners:
            await asyncio.gather(*self._runners, return_exceptions=True)

    def _start(self) -> None:
        """Another runner, if one may run and none is about to: it takes its batch on the
        next loop turn, so everything queued until then goes into it (group commit)."""
        if self._starting or len(self._runners) >= self.transactions:
            return
        if not any(i.space_id not in self._busy for i in self._items):
            return
        self._starting = True
        task = asyncio.create_task(self._run())
        self._runners.add(task)
        task.add_done_callback(self._runners.discard)

    def _take(self) -> list[Any]:
        batch: list[Any] = []
        kept: list[Any] = []
        passed: set[str] = set()  # spaces whose earlier items stay queued: so do later ones
        for item in self._items:
            space = item.space_id
            fits = len(batch) < self.batch and (self.across_spaces or not batch or batch[0].space_id == space)
            if space in self._busy or space in passed or not fits:
                passed.add(space)
                kept.append(item)
            else:
                batch.append(item)
        self._items = kept
        self._busy.update(i.space_id for i in batch)
        return batch

    async def _run(self) -> None:
        self._starting = False
        batch = self._take()
        while batch:
            try:
                await self._commit(batch)
            finally:
                self._busy.difference_update(i.space_id for i in batch)
            batch = self._take()
            self._start()  # what waited on this batch's spaces may go to another runner
