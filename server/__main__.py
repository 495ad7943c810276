"""python -m server: options -> database (embedded or MONGODB_URI) -> app -> listen."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import sys
from urllib.parse import urlsplit, urlunsplit

import tornado.process
from pymongo import AsyncMongoClient

from server import client_expiry, connections, logs, workers
from server.app import make_app
from server.config import Settings
from server.embedded import EmbeddedMongo
from server.pokes import PokeHub
from server.store import SchemaTooNew, Store
from server.watcher import Watcher
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
    watcher = Watcher(hub) if run.watch else None
    store = Store(
        client,
        settings.db_name,
        group_commit=settings.group_commit,
        pull_cache=settings.pull_cache,
        sole_writer=not run.watch,  # else other processes commit too: pulls read the database
        on_commit=watcher.local_commit if watcher is not None else hub.poke,
        client_ttl_seconds=settings.client_ttl_days * client_expiry.DAY,
        max_mutations=settings.max_mutations,
    )
    await store.init()
    expiry_task = client_expiry.start(store, settings.client_ttl_days, settings.gc_interval_seconds)
    if watcher is not None:
        # Test hook: a slow change stream, to show that no answer waits on it.
        watcher.delay = float(os.environ.get("REPLICACHE_TEST_WATCHER_DELAY", "0"))
        await watcher.open(store)  # before serving: no commit after this point is missed
        watcher.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before "listening": a signal then is graceful too
        loop.add_signal_handler(sig, stop.set)
    if run.parent_fd is not None:
        workers.on_parent_exit(run.parent_fd, stop.set)
    server = connections.Server(make_app(settings, store, hub), settings)
    server.add_sockets(run.sockets)
    if tornado.process.task_id() in (None, 0):  # one line, however many processes
        url = f"http://{settings.host}:{settings.port}"
        print(f"listening on {url} (database: {where}{run.describe()})", flush=True)

    await stop.wait()
    log.info("shutting down")
    server.stop()  # stop accepting
    if expiry_task is not None:
        expiry_task.cancel()
    await hub.close()  # end SSE streams with their last chunk
    await store.drain()  # let queued pushes commit and answer
    await server.close_all_connections()
    if watcher is not None:
        await watcher.close()
    await client.close()


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_args(argv)
    secrets = [settings.auth_secret, settings.admin_token, settings.cookie_secret]
    password = urlsplit(settings.mongodb_uri).password
    logs.setup_logging(settings.log_level, [*secrets, *([password] if password else [])])
    log.info("open files limit: %d", raise_fd_limit())
    embedded = None
    if settings.mongodb_uri:
        uri, where = settings.mongodb_uri, redact(settings.mongodb_uri)
    else:
        embedded = EmbeddedMongo(settings.data_dir)
        uri, where = embedded.start(), f"embedded at {embedded.data_dir}"
        logs.add_secret(embedded.password)
    try:
        run = prepare(settings, uri, embedded=embedded is not None)
        asyncio.run(serve(settings, uri, where, run))
    except SchemaTooNew as e:
        raise SystemExit(str(e)) from None
    finally:
        if embedded is not None and not workers.is_worker():  # the parent owns the database
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
