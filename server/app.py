"""make_app: the routes, nothing else."""

from __future__ import annotations

import tornado.web

from server import metrics
from server.auth import AuthService
from server.config import Settings
from server.handlers import pages
from server.handlers.admin import admin_routes
from server.handlers.base import NotFoundHandler
from server.handlers.ops import HealthzHandler, MetricsHandler, ReadyzHandler
from server.handlers.poke import PokeHandler
from server.handlers.replicache import (
    CreateSpaceHandler,
    PullHandler,
    PushHandler,
    SpaceExistsHandler,
)
from server.logs import make_log_function
from server.pokes import PokeHub
from server.store import Store


def make_app(settings: Settings, store: Store, hub: PokeHub) -> tornado.web.Application:
    deps = {"store": store, "hub": hub, "config": settings}
    api = "/api/replicache"
    metrics.watch_hub(hub)
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
