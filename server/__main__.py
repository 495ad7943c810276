"""python -m server: options -> database (embedded or MONGODB_URI) -> app -> listen."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import sys
from urllib.parse import urlsplit, urlunsplit

import tornado.httpserver
import tornado.process
from pymongo import AsyncMongoClient

from server import gc, metrics, workers
from server.app import make_app
from server.config import Settings
from server.embedded import EmbeddedMongo
from server.logs import setup_access_log
from server.memory_guard import MemoryGuard
from server.pokes import PokeHub
from server.store import Store
from server.watcher import Watcher, pull_cache_safe
from server.workers import Run, prepare

log = logging.getLogger("server")


def redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def raise_fd_limit() -> int:
    """Every SSE listener holds a socket: use the hard limit, not the soft one (often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


async def serve(settings: Settings, uri: str, where: str, run: Run) -> None:
    """One process: its own client, store, hub and watcher on the shared sockets."""
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    hub = PokeHub()
    store = Store(
        client,
        settings.db_name,
        group_commit=settings.group_commit,
        pull_cache=settings.pull_cache and pull_cache_safe(run.processes, run.watch),
        on_commit=hub.poke,
    )
    await store.init()
    gc_task = gc.start(store, settings.client_ttl_days, settings.gc_interval_seconds)
    watcher = Watcher(store, hub) if run.watch else None
    if watcher is not None:
        await watcher.open()  # before serving: no commit after this point is missed
        watcher.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before "listening": a signal then is graceful too
        loop.add_signal_handler(sig, stop.set)
    if run.parent_fd is not None:
        workers.on_parent_exit(run.parent_fd, stop.set)
    server = tornado.httpserver.HTTPServer(
        make_app(settings, store, hub), xheaders=True, max_body_size=settings.max_body_bytes
    )
    server.add_sockets(run.sockets)
    if tornado.process.task_id() in (None, 0):  # one line, however many processes
        url = f"http://{settings.host}:{settings.port}"
        print(f"listening on {url} (database: {where}{run.describe()})", flush=True)

    await stop.wait()
    log.info("shutting down")
    server.stop()  # stop accepting
    if gc_task is not None:
        gc_task.cancel()
    await hub.close()  # end SSE streams with their last chunk
    await store.drain()  # let queued pushes commit and answer
    await server.close_all_connections()
    if watcher is not None:
        await watcher.close()
    await client.close()


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    setup_access_log()
    log.info("open files limit: %d", raise_fd_limit())
    embedded = guard = None
    if settings.mongodb_uri:
        uri, where = settings.mongodb_uri, redact(settings.mongodb_uri)
    else:
        embedded = EmbeddedMongo(
            settings.data_dir,
            cache_size=settings.embedded_cache_size,
            oplog_max_entries=settings.embedded_oplog_max_entries,
            oplog_retention_seconds=settings.embedded_oplog_retention_seconds,
        )
        uri, where = embedded.start(), f"embedded at {embedded.data_dir}"
        metrics.watch_embedded(embedded)  # before forking: workers read its shared pid
        guard = MemoryGuard(embedded, settings.embedded_max_rss_mb, settings.embedded_check_seconds).start()
    try:
        run = prepare(settings, uri, embedded=embedded is not None)
        asyncio.run(serve(settings, uri, where, run))
    finally:
        if embedded is not None and guard is not None and not workers.is_worker():  # the parent owns it
            guard.stop()
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
