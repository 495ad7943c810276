"""Fixtures: one real embedded database per test session, a fresh database per test."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from server.app import make_app
from server.config import Settings
from server.embedded import EmbeddedMongo
from server.lifecycle import Lifecycle
from server.pokes import PokeHub
from server.store import Store
from server.testing import ROOT, LiveServer
from tests.helpers import Api, launch_chromium

_db_names = itertools.count()


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """MONGODB_URI runs the suite against a real MongoDB; else an in-memory secantusdb."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    db = EmbeddedMongo(None)
    yield db.start()
    db.stop()


@pytest.fixture
def db_name() -> str:
    return f"test_{os.getpid()}_{next(_db_names)}"


@pytest.fixture
def settings(request) -> Settings:
    """Parametrize indirectly with a dict of Settings fields to change them."""
    return Settings(**getattr(request, "param", {}))


@pytest.fixture
def mongo_client(io_loop, mongo_uri) -> Iterator[AsyncMongoClient]:
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    yield client
    io_loop.run_sync(client.close)


@pytest.fixture
def hub() -> PokeHub:
    return PokeHub()


@pytest.fixture
def lifecycle() -> Lifecycle:
    """The app's: close() it to start a graceful stop (503 ShuttingDown from then on)."""
    return Lifecycle()


@pytest.fixture
def store(io_loop, mongo_client, db_name, settings, hub) -> Store:
    store = Store(
        mongo_client,
        db_name,
        group_commit=settings.group_commit,
        pull_cache=settings.pull_cache,
        on_commit=hub.poke,
        client_ttl_seconds=settings.client_ttl_days * 86400,
        max_mutations=settings.max_mutations,
        max_groups_per_user=settings.max_groups_per_user,
    )
    io_loop.run_sync(store.init)
    return store


@pytest.fixture
def app(settings, store, hub, lifecycle):
    return make_app(settings, store, hub, lifecycle)


@pytest.fixture
def api(http_client, base_url) -> Api:
    return Api(http_client, base_url)


@pytest.fixture(scope="session")
def client_dist() -> Path:
    """The built counter app; `make client` (re)builds it when missing or stale."""
    subprocess.run(["make", "--no-print-directory", "client"], cwd=ROOT, check=True)
    return ROOT / "static" / "dist"


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, client_dist) -> Iterator[LiveServer]:
    """One `python -m server` with its own database, for the Node client and browser tests."""
    with LiveServer(data_dir=tmp_path_factory.mktemp("live-data")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's, tests.helpers.launch_chromium) for a module's browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        yield browser
        browser.close()
