"""Test-only helpers: a small client for the HTTP API (bodies from server.testing, shaped
like the real Replicache client's), database snapshots, Chromium's flags."""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from server.testing import mutation as mutation  # re-exported: most tests import it from here
from server.testing import pull_body, push_body, raise_open_files
from tests.snapshot import Snapshot, snapshot


async def database_state(store: Any) -> Snapshot:
    """Every document of every collection in the store's database (tests/snapshot.py): for
    checks that a request changed nothing at all, whatever the schema."""
    return await snapshot(store.db.client, store.db.db.name)


async def group_users(store: Any, space_id: str) -> dict[str, str | None]:
    """The space's live client groups and the user each belongs to (None: auth was off)."""
    return {g["clientGroupID"]: g.get("user") for g in (await store.admin.space(space_id))["groups"]}


def uid(prefix: str = "") -> str:
    return prefix + secrets.token_hex(6)


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


@dataclass
class Api:
    http: AsyncHTTPClient
    base_url: str

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response: HTTPResponse = await self.http.fetch(
            self.base_url + path,
            method="POST",
            body=raw,
            headers={"Content-Type": "application/json", **(headers or {})},
            raise_error=False,
        )
        text = response.body.decode() if response.body else ""
        return Reply(response.code, json.loads(text) if text else None, response.headers)

    async def create_space(self, space_id: str | None = None) -> str:
        r = await self.post("/api/replicache/createSpace", {} if space_id is None else {"spaceID": space_id})
        assert r.status == 200, r.body
        return r.body["spaceID"]

    async def push(self, space: str, group: str, mutations: list[dict[str, Any]], **extra: Any) -> Reply:
        body = push_body(group, mutations, **extra)
        return await self.post(f"/api/replicache/push?spaceID={quote(space)}", body)

    async def pull(self, space: str, group: str, cookie: Any = None, **extra: Any) -> Reply:
        body = pull_body(group, cookie, **extra)
        return await self.post(f"/api/replicache/pull?spaceID={quote(space)}", body)

    async def view(self, space: str) -> dict[str, Any]:
        """The full client view of a space, read by a fresh client group."""
        r = await self.pull(space, uid("viewer-"))
        assert r.status == 200, r.body
        return {op["key"]: op["value"] for op in r.body["patch"] if op["op"] == "put"}


def need_open_files(count: int) -> None:
    """Raise this process's open-files limit to count, or skip the test, saying why."""
    limit = raise_open_files(count)
    if limit < count:
        pytest.skip(f"needs {count} open files, and the hard RLIMIT_NOFILE is {limit} (raise it: ulimit -Hn)")


# Debian's chromium, never a browser download; these flags keep it off the closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "no chromium on PATH: `make test` installs Debian's (apt-get install chromium)"
    return path


def launch_chromium(pw: Any) -> Any:
    """Debian's chromium, headless, with CHROMIUM_FLAGS: a Browser from sync Playwright, an
    awaitable of one from async Playwright."""
    return pw.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS)
