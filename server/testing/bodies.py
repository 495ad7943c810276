"""Push and pull bodies shaped like the real Replicache client's (15.x, push/pull version 1).

Plain dicts, so a caller can add, drop or break a field (extra keyword arguments replace
or add fields, e.g. mutations=... or pushVersion=0); json.dumps them to send."""

from __future__ import annotations

from typing import Any


def mutation(
    id: int, client_id: str, name: str = "increment", args: Any = 1, timestamp: float = 12.5
) -> dict[str, Any]:
    return {"id": id, "name": name, "args": args, "timestamp": timestamp, "clientID": client_id}


def push_body(
    group: str, mutations: list[dict[str, Any]], /, profile: str = "p1", **extra: Any
) -> dict[str, Any]:
    return {
        "profileID": profile,
        "clientGroupID": group,
        "mutations": mutations,
        "pushVersion": 1,
        "schemaVersion": "",
        **extra,
    }


def pull_body(group: str, cookie: Any = None, /, profile: str = "p1", **extra: Any) -> dict[str, Any]:
    return {
        "profileID": profile,
        "clientGroupID": group,
        "cookie": cookie,
        "pullVersion": 1,
        "schemaVersion": "",
        **extra,
    }
