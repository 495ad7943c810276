"""Remove client groups idle longer than CLIENT_TTL_DAYS, once, and print how many.

    MONGODB_URI=mongodb://... .venv/bin/python scripts/gc_clients.py [--client-ttl-days 30]

Takes the server's own options (python -m server --help). With the embedded
database (no MONGODB_URI) the server must be stopped: the data dir has one owner.
A running server also does this every GC_INTERVAL_SECONDS.
"""

from __future__ import annotations

import asyncio
import sys

from pymongo import AsyncMongoClient

from server.client_expiry import DAY
from server.config import Settings
from server.embedded import EmbeddedMongo
from server.store import Store


async def run(settings: Settings, uri: str) -> int:
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        store = Store(client, settings.db_name)
        await store.init()
        return await store.expire_groups(settings.client_ttl_days * DAY)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_args(argv)
    if settings.client_ttl_days <= 0:
        print("client GC is off (CLIENT_TTL_DAYS is 0)")
        return 0
    embedded = None if settings.mongodb_uri else EmbeddedMongo(settings.data_dir)
    try:
        uri = settings.mongodb_uri or embedded.start()  # type: ignore[union-attr]
        removed = asyncio.run(run(settings, uri))
    finally:
        if embedded is not None:
            embedded.stop()
    print(f"removed {removed} client groups idle more than {settings.client_ttl_days:g} days")
    return 0


if __name__ == "__main__":
    sys.exit(main())
