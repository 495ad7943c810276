"""The database: collections, indexes, schema version, and transactions with retries."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pymongo import WriteConcern
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.read_concern import ReadConcern

from server import metrics
from server.store import migrate, schema

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_CONFLICT = 112
DUPLICATE_KEY = 11000
MAX_ATTEMPTS = 20  # transient errors and write conflicts; each retry waits a little longer
COMMIT_RETRIES = 3  # "unknown commit result" (a network blip during commit)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of this server."""


class Retry(Exception):
    """Raised inside a transaction to run it again with fresh reads."""


class _CommitFailed(Exception):
    """The commit was sent and failed: the transaction must not run again."""


def duplicate_key(error: BulkWriteError) -> bool:
    """Another writer got there first: a head moved (see schema.bump) or a document was made."""
    return any(e.get("code") == DUPLICATE_KEY for e in error.details.get("writeErrors", []))


def transient(error: PyMongoError) -> bool:
    return (
        isinstance(error, OperationFailure)
        and error.code == WRITE_CONFLICT
        or error.has_error_label("TransientTransactionError")
    )


class Database:
    def __init__(self, client: Any, db_name: str) -> None:
        """`client`: a pymongo AsyncMongoClient or a Motor AsyncIOMotorClient."""
        self.client = client
        # Journaled: a push answered 200 is on disk.
        self.write_concern = WriteConcern(w="majority", j=True)
        self.db = client.get_database(db_name, write_concern=self.write_concern)
        self.data = self.db[schema.DATA]
        self.owners = self.db[schema.OWNERS]
        self.space_list = self.db[schema.SPACE_LIST]
        self.meta = self.db[schema.META]

    async def init(self) -> None:
        """Check the schema version, migrate an older database, make the indexes."""
        found = await self.meta.find_one({"_id": "schema"})
        version = found["version"] if found else None
        if version is not None and version > schema.SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database {self.db.name!r} has schema version {version}; this server knows up to"
                f" {schema.SCHEMA_VERSION}: run a newer server, or another database"
            )
        for name, indexes in schema.INDEXES.items():
            await self.db[name].create_indexes(indexes)
        if version is None:
            await migrate.from_v1(self)
            await self.meta.update_one(
                {"_id": "schema"}, {"$set": {"version": schema.SCHEMA_VERSION}}, upsert=True
            )

    async def ping(self) -> None:
        await self.db.command("ping")

    @asynccontextmanager
    async def session(self, **options: Any) -> AsyncIterator[Any]:
        session = self.client.start_session(**options)
        if inspect.isawaitable(session):  # Motor
            session = await session
        async with session as s:
            yield s

    async def transaction(self, callback: Callable[[Any], Awaitable[T]]) -> T:
        """callback(session) in a snapshot transaction, committed journaled. Run again on a
        write conflict, a transient error, a lost connection (the embedded database being
        restarted: the next attempt waits for it in server selection), or Retry; a duplicate
        key also means another writer got there first. Never run again once a commit may
        have gone through: an unknown commit result is retried as a commit, then raised (a
        push re-sent by its client is skipped by lastMutationID if it did). Bounded: a
        database that stays away ends it with its error."""
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                metrics.transaction_retry()
                await asyncio.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))
            try:
                async with self.session() as s:
                    await _start(s, self.write_concern)
                    try:
                        result = await callback(s)
                    except BaseException:
                        if s.in_transaction:
                            await s.abort_transaction()
                        raise
                    try:
                        await _commit(s)
                    except PyMongoError as e:
                        if e.has_error_label("TransientTransactionError"):
                            continue  # not committed (say, lost in a restart): safe to run again
                        raise _CommitFailed from e
                    return result
            except _CommitFailed as failed:
                raise failed.__cause__ from None
            except Retry:
                continue
            except BulkWriteError as e:
                if not duplicate_key(e):
                    raise
                metrics.transaction_conflict()
            except DuplicateKeyError:
                metrics.transaction_conflict()
            except ServerSelectionTimeoutError as e:
                # Unreachable for the whole selection window: do not wait another round.
                raise ServerSelectionTimeoutError(str(e)) from e
            except ConnectionFailure:
                continue
            except PyMongoError as e:
                if not transient(e):
                    raise
                metrics.transaction_conflict()
        raise OperationFailure(f"transaction did not commit after {MAX_ATTEMPTS} attempts", WRITE_CONFLICT)

    async def snapshot_read(self, callback: Callable[[Any], Awaitable[T]]) -> T:
        """callback(session) in a snapshot session, outside a transaction: one round trip per
        query and no commit. Consistent only within each single query (MongoDB pins every
        read of the session to one point in time; the embedded database pins each query)."""
        async with self.session(snapshot=True) as s:
            return await callback(s)


async def _start(session: Any, write_concern: WriteConcern) -> None:
    started = session.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=write_concern)
    if inspect.isawaitable(started):  # PyMongo's async API; Motor's is synchronous
        await started


async def _commit(session: Any) -> None:
    for attempt in range(COMMIT_RETRIES + 1):
        try:
            await session.commit_transaction()
            return
        except PyMongoError as e:
            if attempt == COMMIT_RETRIES or not e.has_error_label("UnknownTransactionCommitResult"):
                raise
