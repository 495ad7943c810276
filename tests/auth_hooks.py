"""Auth hooks for tests/test_auth_hook.py (--auth-hook tests.auth_hooks:FUNCTION).

An API key in X-Api-Key, "<user>@<space or *>"; special keys misbehave on purpose."""

from __future__ import annotations

import asyncio
from typing import Any

from server.auth import Refused

calls: list[tuple[str | None, str | None]] = []  # (space_id, Authorization) per call


async def api_key(headers: Any, space_id: str | None) -> Any:
    calls.append((space_id, headers.get("Authorization")))
    key = headers.get("X-Api-Key") or headers.get("Authorization")
    if key is None:
        raise Refused()
    if key == "crash":
        raise RuntimeError("the user database is down")
    if key == "hang":
        await asyncio.Event().wait()
    if key == "not-a-user":
        return 42
    user, _, allowed = key.partition("@")
    if not user:
        raise Refused("unknown API key")
    if space_id is not None and allowed not in ("*", space_id):
        raise Refused(f"{user} may not use {space_id}", status=403)
    return user


def not_async(headers: Any, space_id: str | None) -> str:
    return "someone"
