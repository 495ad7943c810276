"""SyncServer: everything one process serves with, made in one call. It is the one way to
run the server: `python -m server` uses it, and so does a program that embeds the server
(docs/embedding.md). make_app: the routes, nothing else."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import tornado.web

from server import client_expiry, connections, metrics
from server import mutators as builtin
from server.admin.routes import admin_routes
from server.auth import AuthService
from server.config import Settings
from server.handlers import pages
from server.handlers.base import NotFoundHandler
from server.handlers.ops import HealthzHandler, MetricsHandler, ReadyzHandler
from server.handlers.poke import PokeHandler
from server.handlers.replicache import (
    CreateSpaceHandler,
    PullHandler,
    PushHandler,
    SpaceExistsHandler,
)
from server.lifecycle import Lifecycle, stop_task
from server.logs import make_log_function
from server.mutators import Mutator
from server.pokes import PokeHub
from server.store import Store
from server.watcher import Watcher


@dataclass
class SyncServer:
    """`app` serves every route; `store` is the one door to the data (store.write for your
    backend's own writes); `hub` holds the poke listeners; `lifecycle` says whether the
    server is shutting down (close() begins it)."""

    settings: Settings
    store: Store
    hub: PokeHub
    lifecycle: Lifecycle
    app: tornado.web.Application
    watcher: Watcher | None = None
    expiry: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        settings: Settings,
        client: Any,
        *,
        mutators: dict[str, Mutator] | None = None,
        watch: bool = False,
    ) -> SyncServer:
        """Check (and migrate) the database, start client expiry, build the app.

        client: a pymongo AsyncMongoClient; it stays yours to close, after close().
        mutators: name -> async (tx, args); None: those of settings.mutators (--mutators),
        else the built-in increment.
        watch: other processes commit to this database too (more server processes, or your
        own scripts with their own Store): poke for their commits through a change stream
        (a replica set), and answer every pull from the database."""
        hub = PokeHub()
        lifecycle = Lifecycle()
        watcher = Watcher(hub) if watch else None
        store = Store(
            client,
            settings.db_name,
            group_commit=settings.group_commit,
            pull_cache=settings.pull_cache,
            sole_writer=not watch,
            mutators=builtin.load(settings.mutators) if mutators is None else mutators,
            on_commit=watcher.local_commit if watcher is not None else hub.poke,
            client_ttl_seconds=settings.client_ttl_days * client_expiry.DAY,
            max_mutations=settings.max_mutations,
            max_groups_per_user=settings.max_groups_per_user,
        )
        await store.init()
        expiry = client_expiry.start(store, settings.client_ttl_days, settings.gc_interval_seconds)
        if watcher is not None:
            await watcher.open(store)  # before serving: no commit after this point is missed
            watcher.start()
        app = make_app(settings, store, hub, lifecycle)
        return cls(settings, store, hub, lifecycle, app, watcher, expiry)

    def http_server(self, app: tornado.web.Application | None = None) -> connections.Server:
        """The hardened HTTP server (timeouts, per-address caps, trusted proxies:
        docs/security.md) for `app`: self.app, or your own application that mounts it
        (docs/embedding.md). listen() or add_sockets() it."""
        return connections.Server(self.app if app is None else app, self.settings)

    async def close(self) -> None:
        """End the SSE streams, let queued pushes commit and answer, stop the background
        tasks. Stop your HTTP server accepting before; close its connections after."""
        if self.expiry is not None:
            self.expiry.cancel()  # no run starts now; stop_task below waits for its end
        self.lifecycle.close()  # from now on new requests get 503 ShuttingDown
        self.hub.wake_all()  # every SSE stream ends with its last chunk
        await self.hub.emptied(timeout=10.0)
        await self.store.drain()  # let queued pushes commit and answer
        if self.expiry is not None:
            await stop_task(self.expiry)
        if self.watcher is not None:
            await self.watcher.close()


def make_app(
    settings: Settings, store: Store, hub: PokeHub, lifecycle: Lifecycle | None = None
) -> tornado.web.Application:
    """The routes. lifecycle: the one that SyncServer.close() closes; None: one that nobody
    closes (an app that never shuts down, as in most tests)."""
    lifecycle = Lifecycle() if lifecycle is None else lifecycle
    deps = {"store": store, "hub": hub, "config": settings, "lifecycle": lifecycle}
    api = "/api/replicache"
    metrics.watch_listeners(hub)
    ops = [
        ("/healthz", HealthzHandler, deps),
        ("/readyz", ReadyzHandler, deps),
        ("/metrics", MetricsHandler, deps),
    ]
    admin = admin_routes(deps) if settings.admin_token else []
    return tornado.web.Application(
        [
            *ops,
            *admin,
            (f"{api}/push", PushHandler, deps),
            (f"{api}/pull", PullHandler, deps),
            (f"{api}/createSpace", CreateSpaceHandler, deps),
            (f"{api}/spaceExists", SpaceExistsHandler, deps),
            (f"{api}/poke", PokeHandler, deps),
            *pages.routes(deps),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=deps,
        allowed_origins=settings.allowed_origins(),
        auth=AuthService(settings),
        log_function=make_log_function(settings.log_format),
    )
