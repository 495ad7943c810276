"""python -m server: options -> database (embedded or MONGODB_URI) -> app -> listen."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from urllib.parse import urlsplit, urlunsplit

import tornado.httpserver
from pymongo import AsyncMongoClient

from server import gc
from server.app import make_app
from server.config import Settings
from server.embedded import EmbeddedMongo
from server.pokes import PokeHub
from server.store import Store

log = logging.getLogger("server")


def redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


async def serve(settings: Settings, uri: str, where: str) -> None:
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    hub = PokeHub()
    store = Store(
        client,
        settings.db_name,
        group_commit=settings.group_commit,
        pull_cache=settings.pull_cache,
        on_commit=hub.poke,
    )
    await store.init()
    gc_task = gc.start(store, settings.client_ttl_days, settings.gc_interval_seconds)
    server = tornado.httpserver.HTTPServer(
        make_app(settings, store, hub), xheaders=True, max_body_size=settings.max_body_bytes
    )
    server.listen(settings.port, settings.host)
    print(f"listening on http://{settings.host}:{settings.port} (database: {where})", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    server.stop()  # stop accepting
    if gc_task is not None:
        gc_task.cancel()
    hub.close_all()  # end SSE streams
    await store.drain()  # let queued pushes commit and answer
    await server.close_all_connections()
    await client.close()


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    embedded = None
    if settings.mongodb_uri:
        uri, where = settings.mongodb_uri, redact(settings.mongodb_uri)
    else:
        embedded = EmbeddedMongo(settings.data_dir)
        uri, where = embedded.start(), f"embedded at {embedded.data_dir}"
    try:
        asyncio.run(serve(settings, uri, where))
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
