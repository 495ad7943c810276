"""The `scale` scenario of scripts/bench.py (issue 19): the same requests against a fresh
database and against one that already holds N spaces, side by side in one run.

The N spaces are written straight into the embedded database (a head, a `count` entry, a
client group and a client each: what one push and one pull leave), so making 20,000 takes
seconds, not the hour that 60,000 HTTP requests would. Then one server runs on each data
dir in turn, and each figure is measured as a p50 over `count` requests:
createSpace, the first push to a new space, a first pull (cookie null), and the admin
spaces list (its first page).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from typing import Any
from urllib.parse import quote

import _bench_report as report
from _bench_core import start_server
from _bench_http import Connection, pull_bytes, push_bytes, split_url

ADMIN_TOKEN = "bench-admin-" + secrets.token_hex(16)
CHUNK = 2000  # documents per insert


def fill(data_dir: str, spaces: int) -> float:
    """Write `spaces` spaces into a new embedded database in data_dir; returns the seconds."""
    from pymongo import MongoClient

    from server.embedded import EmbeddedMongo
    from server.store import schema

    started = time.monotonic()
    db = EmbeddedMongo(data_dir)
    client: MongoClient[dict[str, Any]] = MongoClient(db.start())
    try:
        data = client["replicache"][schema.DATA]
        for name, indexes in schema.INDEXES.items():
            client["replicache"][name].create_indexes(indexes)
        when = schema.now()
        for first in range(0, spaces, CHUNK):
            docs, owners, listed = [], [], []
            for i in range(first, min(spaces, first + CHUNK)):
                space, group, client_id = f"scale-{i:06d}", f"g-scale-{i:06d}", f"c-scale-{i:06d}"
                docs.append({**schema.new_head(space, when), "version": 1, "entries": 1})
                listed.append(schema.listed(space, i + 1))
                docs.append(
                    {**schema.at(space, schema.ENTRY, "count"), "value": "1", "deleted": False, "version": 1}
                )
                docs.append(
                    {
                        **schema.at(space, schema.GROUP, group),
                        "user": None,
                        "created": when,
                        "lastSeen": when,
                        "version": 0,
                    }
                )
                docs.append(
                    {
                        **schema.at(space, schema.GROUP, group, client_id),
                        "lmid": 1,
                        "lastSeen": when,
                        "version": 1,
                    }
                )
                owners.append(schema.owner(group, space, None, when))
            data.insert_many(docs, ordered=False)
            client["replicache"][schema.OWNERS].insert_many(owners, ordered=False)
            client["replicache"][schema.SPACE_LIST].insert_many(listed, ordered=False)
        meta = client["replicache"][schema.META]
        meta.update_one({"_id": "spaces"}, {"$set": {"seq": spaces, "live": spaces}}, upsert=True)
        meta.update_one({"_id": "schema"}, {"$set": {"version": schema.SCHEMA_VERSION}}, upsert=True)
    finally:
        client.close()
        db.stop()
    return round(time.monotonic() - started, 1)


async def measure(url: str, count: int, timeout: float) -> dict[str, dict[str, Any]]:
    host, port = split_url(url)
    conn = Connection(host, port, timeout)
    created, pushes, pulls, lists = [], [], [], []
    spaces = []
    for _ in range(count):
        started = time.perf_counter()
        status, body = await conn.post_json("/api/replicache/createSpace", {})
        created.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"createSpace answered {status}: {body}")
        spaces.append(body["spaceID"])
    for space in spaces:
        token = secrets.token_hex(6)
        started = time.perf_counter()
        status, raw = await conn.request(
            "POST", f"/api/replicache/push?spaceID={quote(space)}", push_bytes(f"g-{token}", f"c-{token}", 1)
        )
        pushes.append(time.perf_counter() - started)
        if status != 200 or raw.strip() != b"{}":
            raise RuntimeError(f"push answered {status}: {raw[:200]!r}")
        started = time.perf_counter()
        status, raw = await conn.request(
            "POST", f"/api/replicache/pull?spaceID={quote(space)}", pull_bytes(f"r-{token}", None)
        )
        pulls.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"pull answered {status}: {raw[:200]!r}")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for _ in range(count):
        started = time.perf_counter()
        status, raw = await conn.request("GET", "/admin/api/spaces?limit=25", headers=admin)
        lists.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"the admin list answered {status}: {raw[:200]!r}")
    conn.close()
    return {
        "createSpace": report.latency_summary(created),
        "first push": report.latency_summary(pushes),
        "first pull": report.latency_summary(pulls),
        "admin list": report.latency_summary(lists),
    }


async def scale(b: Any) -> dict[str, Any]:
    """b: the bench.Bench (sizes, timeout, tmp, server_flags, emit)."""
    n = b.sizes.spaces
    fresh_dir, full_dir = tempfile.mkdtemp(dir=b.tmp), tempfile.mkdtemp(dir=b.tmp)
    fill_seconds = await asyncio.to_thread(fill, full_dir, n)
    count = min(b.sizes.count, 200)
    figures = {}
    for label, data_dir in (("fresh", fresh_dir), (f"{n} spaces", full_dir)):
        server = await start_server(data_dir, ["--admin-token", ADMIN_TOKEN, *b.server_flags])
        try:
            figures[label] = await measure(server.url, count, b.timeout)
        finally:
            await asyncio.to_thread(server.close)
    fresh, full = figures["fresh"], figures[f"{n} spaces"]
    ratios = {k: round(full[k]["p50_ms"] / fresh[k]["p50_ms"], 2) for k in fresh}
    for key in fresh:
        notes = f"p50 {fresh[key]['p50_ms']} ms fresh: {ratios[key]}x with {n} spaces (target <= 1.3x)"
        b.emit(f"scale: {key} ({n} spaces)", full[key], notes)
    return {
        "spaces": n,
        "requests": count,
        "fill_seconds": fill_seconds,
        "fresh": fresh,
        "at_n": full,
        "ratio": ratios,
    }
