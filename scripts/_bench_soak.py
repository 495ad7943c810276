"""The `soak` scenario of scripts/bench.py: minutes of mixed load, and how memory moves.

Writers each own a space and a client group and loop push-then-pull (the pull is one
change behind, so it takes the database path); SSE listeners come and go at a steady
rate. Every few seconds it samples the RSS of the server and of its embedded database
(the secantusd child, found again at every sample, since a restart gives it a new pid).

After a warm-up it fits RSS against the number of accepted pushes (least squares):
  server_kb_per_push  the server process
  db_kb_per_push      the embedded database over the whole window, restarts included
  db_leak_kb_per_push the database between restarts (pooled within each pid), i.e. what
                      it keeps per push before a supervised restart hands it back
The targets (issue 16) are about a 20-minute run: db_kb_per_push <= 0.2, the server
about flat, errors 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from _bench_http import Connection, pull_bytes, push_bytes, split_url
from _bench_proc import embedded_db_pid, rss_kb

from server.testing import SSE

SAMPLE_SECONDS = 5.0  # at most; a short run samples 20 times


@dataclass
class SoakSizes:
    seconds: float = 1200.0
    writers: int = 10
    listeners_per_second: float = 20.0
    listen_seconds: float = 5.0  # how long each listener stays
    warmup: float = 0.2  # fraction of the run left out of the fits


QUICK = SoakSizes(seconds=20.0, writers=2, listeners_per_second=2.0, listen_seconds=2.0)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    d = SoakSizes()
    group.add_argument("--soak-seconds", type=float, help=f"soak: how long (default {d.seconds:g})")
    group.add_argument("--soak-writers", type=int, help=f"soak: push+pull loops (default {d.writers})")
    group.add_argument(
        "--soak-listeners",
        type=float,
        help=f"soak: new SSE listeners a second (default {d.listeners_per_second:g})",
    )


def sizes_from(args: argparse.Namespace, quick: bool) -> SoakSizes:
    base = QUICK if quick else SoakSizes()
    overrides = {
        "seconds": args.soak_seconds,
        "writers": args.soak_writers,
        "listeners_per_second": args.soak_listeners,
    }
    return SoakSizes(**{**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}})


# ---- fits


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None with fewer than 3 points or no spread in x."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def pooled_slope(groups: list[list[tuple[float, float]]]) -> float | None:
    """One slope fitted within every group (each with its own intercept)."""
    sxx = sxy = 0.0
    for points in groups:
        if len(points) < 2:
            continue
        mx = sum(x for x, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        sxx += sum((x - mx) ** 2 for x, _ in points)
        sxy += sum((x - mx) * (y - my) for x, y in points)
    return None if sxx == 0 else sxy / sxx


# ---- the load


class Load:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.pushes = 0
        self.pulls = 0
        self.errors: Counter[str] = Counter()
        self.listeners: Counter[str] = Counter()
        self.push_latencies: list[float] = []
        self.stop = asyncio.Event()

    def error(self, what: str) -> None:
        self.errors[what] += 1

    async def writer(self, space: str) -> None:
        host, port = split_url(self.url)
        conn = Connection(host, port, self.timeout)
        group, client = "g-" + secrets.token_hex(6), "c-" + secrets.token_hex(6)
        cookie: Any = None
        mutation_id = 1
        while not self.stop.is_set():
            started = time.perf_counter()
            try:  # like the real client: a failed push is sent again with the same id
                path = f"/api/replicache/push?spaceID={quote(space)}"
                status, body = await conn.request("POST", path, push_bytes(group, client, mutation_id))
                if status == 200:
                    self.pushes += 1
                    mutation_id += 1
                    self.push_latencies.append(time.perf_counter() - started)
                else:
                    self.error(f"push_{status}")
                status, body = await conn.request(
                    "POST", f"/api/replicache/pull?spaceID={quote(space)}", pull_bytes(group, cookie)
                )
                if status == 200:
                    self.pulls += 1
                    cookie = json.loads(body)["cookie"]
                else:
                    self.error(f"pull_{status}")
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                self.error(f"writer_{type(e).__name__}")
                await asyncio.sleep(0.1)
        conn.close()

    async def listener(self, space: str, hold: float) -> None:
        sse = None
        try:
            async with asyncio.timeout(self.timeout):
                sse = await SSE.open(self.url, space, self.timeout)
                if sse.status != 200:
                    self.listeners[f"http_{sse.status}"] += 1
                    self.error(f"listen_{sse.status}")
                    return
                await sse.wait_for("hello", self.timeout)
            self.listeners["ok"] += 1
            try:  # while it stays, pokes arrive (queued, never read)
                ended = await sse.closed(timeout=hold)
            except TimeoutError:
                return
            if ended is not None:  # a reset
                raise ended
            self.listeners["ended_by_server"] += 1
        except (OSError, TimeoutError, EOFError, ValueError) as e:
            self.listeners[type(e).__name__] += 1
            self.error(f"listen_{type(e).__name__}")
        finally:
            if sse is not None:
                sse.close()

    async def churn(self, spaces: list[str], per_second: float, hold: float) -> None:
        tasks: set[asyncio.Task[None]] = set()
        while not self.stop.is_set() and per_second > 0:
            task = asyncio.create_task(self.listener(random.choice(spaces), hold))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0 / per_second)
        await asyncio.gather(*tasks, return_exceptions=True)


async def soak(b: Any) -> dict[str, Any]:
    """b: the bench.Bench (url, pid, timeout, sizes.soak, new_space, emit, sample)."""
    s: SoakSizes = b.sizes.soak
    spaces = [await b.new_space("soak") for _ in range(s.writers)]
    load = Load(b.url, b.timeout)
    tasks = [asyncio.create_task(load.writer(space)) for space in spaces]
    tasks.append(asyncio.create_task(load.churn(spaces, s.listeners_per_second, s.listen_seconds)))
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < s.seconds:
            db_pid = embedded_db_pid(b.pid)
            samples.append(
                {
                    "t": round(elapsed, 1),
                    "pushes": load.pushes,
                    "server_kb": rss_kb(b.pid),
                    "db_pid": db_pid,
                    "db_kb": rss_kb(db_pid),
                }
            )
            await asyncio.sleep(min(SAMPLE_SECONDS, s.seconds / 20, max(0.0, s.seconds - elapsed)))
    finally:
        load.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    result = summarize(samples, s, load)
    b.sample("push", "soak", load.push_latencies)
    name = f"soak ({s.writers} writers, {s.listeners_per_second:g} listeners/s, {s.seconds:g} s)"
    b.emit(name, result, notes(result))
    return result


def summarize(samples: list[dict[str, Any]], s: SoakSizes, load: Load) -> dict[str, Any]:
    from _bench_report import latency_summary

    after = [x for x in samples if x["t"] >= s.warmup * s.seconds]
    server = [(x["pushes"], x["server_kb"]) for x in after if x["server_kb"] is not None]
    db = [(x["pushes"], x["db_kb"]) for x in after if x["db_kb"] is not None]
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for x in after:
        if x["db_kb"] is not None:
            by_pid.setdefault(x["db_pid"], []).append((x["pushes"], x["db_kb"]))
    pids = [x["db_pid"] for x in samples if x["db_pid"] is not None]
    restarts = sum(1 for a, c in zip(pids, pids[1:], strict=False) if a != c)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    db_kbs = [x["db_kb"] for x in samples if x["db_kb"] is not None]
    return {
        **latency_summary(load.push_latencies),
        "seconds": s.seconds,
        "writers": s.writers,
        "listeners_per_second": s.listeners_per_second,
        "pushes": load.pushes,
        "pulls": load.pulls,
        "rate_per_s": round(load.pushes / s.seconds, 1),
        "errors": sum(load.errors.values()),
        "error_detail": dict(load.errors),
        "listeners": dict(load.listeners),
        "warmup_pushes": after[0]["pushes"] if after else None,
        "server_kb_per_push": rounded(slope(server)),
        "db_kb_per_push": rounded(slope(db)),
        "db_leak_kb_per_push": rounded(pooled_slope(list(by_pid.values()))),
        "db_restarts": restarts,
        "server_rss_kb": {
            "start": server[0][1] if server else None,
            "end": server[-1][1] if server else None,
        },
        "db_rss_kb": {
            "start": db[0][1] if db else None,
            "end": db[-1][1] if db else None,
            "max": max(db_kbs) if db_kbs else None,
        },
        "samples": samples,
    }


def notes(r: dict[str, Any]) -> str:
    def mb(kb: int | None) -> str:
        return "-" if kb is None else f"{kb / 1024:.0f}"

    db = r["db_rss_kb"]
    server = r["server_rss_kb"]
    text = (
        f"KB/push after warm-up: server {r['server_kb_per_push']}, db {r['db_kb_per_push']}"
        f" (between restarts {r['db_leak_kb_per_push']}; {r['db_restarts']} restarts);"
        f" db RSS {mb(db['start'])}->{mb(db['end'])} MB (max {mb(db['max'])}),"
        f" server {mb(server['start'])}->{mb(server['end'])} MB; errors {r['errors']}"
    )
    if r["errors"]:
        text += f" {r['error_detail']}"
    return text
