"""Credentials of the embedded database (server/embedded.py): its one user, and the
password it was last given, kept in DIR/secantusd.auth (0600, in a 0700 dir)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

log = logging.getLogger(__name__)

USER = "replicache"
FILE = "secantusd.auth"


def saved_password(data_dir: Path) -> str:
    try:
        return str(json.loads((data_dir / FILE).read_text())["password"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def save_password(data_dir: Path, password: str) -> None:
    """Written whole (a crash leaves the old file or the new one), 0600 from the start."""
    path = data_dir / FILE
    fresh = data_dir / (FILE + ".new")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"user": USER, "password": password}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(fresh, path)


def run(work: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to its end from sync code, even on a thread whose loop is running
    (an async test starting a database)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


async def _admin_command(uri: str, *commands: dict[str, Any]) -> list[Any]:
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        return [await client.admin.command(command) for command in commands]
    finally:
        await client.close()


async def create_user(uri: str, password: str) -> None:
    await _admin_command(
        uri,
        {"dropAllUsersFromDatabase": 1},
        {"createUser": USER, "pwd": password, "roles": [{"role": "root", "db": "admin"}]},
    )


async def change_password(uri: str, password: str) -> None:
    await _admin_command(uri, {"updateUser": USER, "pwd": password})


async def drop_other_users(uri: str) -> None:
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        for db_name in await client.list_database_names():
            found = await client[db_name].command({"usersInfo": 1})
            for user in found.get("users", []):
                if (user.get("user"), user.get("db")) != (USER, "admin"):
                    log.warning(
                        "embedded database: dropping user %r of %s, not ours", user.get("user"), db_name
                    )
                    await client[db_name].command({"dropUser": user["user"]})
    finally:
        await client.close()
