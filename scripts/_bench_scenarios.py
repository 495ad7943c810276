"""The scenarios of scripts/bench.py (its docstring says what each measures); scale and
soak have their own modules. Each takes the Bench, prints its rows and returns its results."""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import _bench_report as report
import _bench_soak as soak
from _bench_core import Bench, start_server
from _bench_http import Connection, pull_bytes, push_bytes
from _bench_proc import fds_back_to, open_fds, rss_kb, settle
from _bench_scale import scale

SCENARIOS = ("push-single", "pull", "push-contention", "idle-capacity", "fan-out", "connect-burst", "scale")
OPT_IN = ("soak",)  # run only when named in --scenarios
WRITER_CPU_LIMIT = 0.8  # a load process busier than this may be the bottleneck


async def push_once(conn: Connection, space: str, group: str, client: str, mutation_id: int) -> float:
    started = time.perf_counter()
    status, body = await conn.request(
        "POST", f"/api/replicache/push?spaceID={quote(space)}", push_bytes(group, client, mutation_id)
    )
    if status != 200 or body.strip() != b"{}":
        raise RuntimeError(f"push answered {status}: {body[:200]!r}")
    return time.perf_counter() - started


async def pull_once(conn: Connection, space: str, group: str, cookie: Any) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    status, body = await conn.request(
        "POST", f"/api/replicache/pull?spaceID={quote(space)}", pull_bytes(group, cookie)
    )
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"pull answered {status}: {body[:200]!r}")
    return elapsed, json.loads(body)


async def space_count(b: Bench, space: str, url: str | None = None) -> Any:
    """The space's `count` as a fresh client group sees it."""
    _, answer = await pull_once(b.connection(url), space, "bench-viewer-" + secrets.token_hex(4), None)
    return next((op["value"] for op in answer["patch"] if op.get("key") == "count"), 0)


async def push_single(b: Bench) -> dict[str, Any]:
    space = await b.new_space("single")
    conn, group, client = b.connection(), "g-" + secrets.token_hex(6), "c-" + secrets.token_hex(6)
    for i in range(1, 6):  # warm up: group creation, connection, caches
        await push_once(conn, space, group, client, i)
    latencies = [await push_once(conn, space, group, client, i) for i in range(6, 6 + b.sizes.count)]
    conn.close()
    result = report.latency_summary(latencies)
    b.sample("push", "push-single", latencies)
    b.emit("push-single", result)
    return result


async def pull(b: Bench) -> dict[str, Any]:
    space = await b.new_space("pull")
    conn, group, client = b.connection(), "g-" + secrets.token_hex(6), "c-" + secrets.token_hex(6)
    await push_once(conn, space, group, client, 1)
    _, first = await pull_once(conn, space, group, None)
    cookie = first["cookie"]
    unchanged = []
    for _ in range(5 + b.sizes.count):
        elapsed, answer = await pull_once(conn, space, group, cookie)
        if answer["cookie"] != cookie or answer["patch"]:
            raise RuntimeError(f"an unchanged pull changed: {answer}")
        unchanged.append(elapsed)
    unchanged = unchanged[5:]
    behind = []
    for i in range(2, 2 + b.sizes.count):
        await push_once(conn, space, group, client, i)
        elapsed, answer = await pull_once(conn, space, group, cookie)
        if answer["patch"] != [{"op": "put", "key": "count", "value": i}]:
            raise RuntimeError(f"a one-behind pull did not carry the one change: {answer}")
        behind.append(elapsed)
        cookie = answer["cookie"]
    conn.close()
    result = {
        "unchanged": report.latency_summary(unchanged),
        "one-behind": report.latency_summary(behind),
    }
    b.sample("pull", "unchanged cookie", unchanged)
    b.sample("pull", "one change behind", behind)
    b.emit("pull (unchanged cookie)", result["unchanged"])
    b.emit("pull (one change behind)", result["one-behind"])
    return result


async def contention(b: Bench, url: str, spaces: int, label: str) -> dict[str, Any]:
    """b.sizes.writers writers over `spaces` spaces for b.sizes.seconds."""
    space_ids = [await b.new_space("contention", url) for _ in range(spaces)]
    tokens = [secrets.token_hex(6) for _ in range(b.sizes.writers)]
    writers = [
        {"space": space_ids[i % spaces], "group": f"g-{tokens[i]}", "client": f"c-{tokens[i]}"}
        for i in range(b.sizes.writers)
    ]
    procs = b.workers[: max(1, min(b.writer_procs, len(b.workers)))]
    start_at = time.monotonic() + 0.5
    replies = await asyncio.gather(
        *(
            w.call(
                {
                    "cmd": "write",
                    "url": url,
                    "writers": writers[i :: len(procs)],
                    "start_at": start_at,
                    "seconds": b.sizes.seconds,
                    "timeout": b.timeout,
                }
            )
            for i, w in enumerate(procs)
        )
    )
    latencies = [x for r in replies for x in r["latencies"]]
    b.sample("push", label, latencies)
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for r in replies:
        statuses.update(r["statuses"])
        errors.update(r["errors"])
    accepted = statuses.pop("200", 0)
    counted = 0
    for space in space_ids:
        counted += await space_count(b, space, url)
    result = {
        **report.latency_summary(latencies),
        "writers": b.sizes.writers,
        "spaces": spaces,
        "seconds": b.sizes.seconds,
        "accepted": accepted,
        "rate_per_s": round(sum(r["in_window"] for r in replies) / b.sizes.seconds, 1),
        "non_200": sum(statuses.values()) + sum(errors.values()),
        "non_200_detail": {**statuses, **errors},
        "count_matches_accepted": counted == accepted,
        "writer_procs": len(procs),
        "writer_cpu": [round(r["cpu"], 2) for r in replies],
    }
    return result


def contention_notes(r: dict[str, Any]) -> str:
    notes = f"non-200 {r['non_200']}; count==accepted {r['count_matches_accepted']}"
    if max(r["writer_cpu"]) > WRITER_CPU_LIMIT:
        notes += f"; WRITER PROCESS BUSY ({max(r['writer_cpu']):.0%} CPU): try --writer-procs 2"
    return notes


async def push_contention(b: Bench) -> dict[str, Any]:
    c = b.sizes.writers
    one = await contention(b, b.url, 1, f"{c} writers, 1 space")
    b.emit(f"push-contention ({c} writers, 1 space)", one, contention_notes(one))
    many = await contention(b, b.url, c, f"{c} writers, {c} spaces")
    b.emit(f"push-contention ({c} writers, {c} spaces)", many, contention_notes(many))
    result: dict[str, Any] = {"one-space": one, "many-spaces": many}
    if one["rate_per_s"]:
        result["spaces_vs_one"] = round(many["rate_per_s"] / one["rate_per_s"], 2)
    baseline = await no_group_commit(b)
    if baseline is not None:
        result["one-space-no-group-commit"] = baseline
        name = f"push-contention ({c} writers, 1 space, no group commit)"
        b.emit(name, baseline, contention_notes(baseline))
        if baseline["rate_per_s"]:
            result["group_commit_speedup"] = round(one["rate_per_s"] / baseline["rate_per_s"], 2)
            print(f"    group commit speedup on one space: {result['group_commit_speedup']}x", flush=True)
    return result


async def no_group_commit(b: Bench) -> dict[str, Any] | None:
    """The one-space run against a server with group commit off: started here, or --compare-url."""
    label = f"{b.sizes.writers} writers, 1 space, no group commit"
    if b.compare_url:
        return await contention(b, b.compare_url, 1, label)
    if b.pid is None:
        print("    (no-group-commit comparison skipped: give --compare-url)", flush=True)
        return None
    data_dir = tempfile.mkdtemp(prefix="nogc-", dir=b.tmp)
    server = await start_server(data_dir, ["--no-group-commit", *b.server_flags])
    try:
        return await contention(b, server.url, 1, label)
    finally:
        await asyncio.to_thread(server.close)


async def idle_capacity(b: Bench) -> dict[str, Any]:
    n = b.sizes.idle
    space = await b.new_space("idle")
    # Warm up: the first connections import and allocate what every later one shares.
    await b.listen(space, min(20, n), 20)
    await b.close_listeners()
    await settle(b.pid)
    base, base_fds = rss_kb(b.pid), open_fds(b.pid)
    opened = await b.listen(space, n, 200)
    await settle(b.pid)
    at_open, open_fds_count = rss_kb(b.pid), open_fds(b.pid)
    ok = opened["counts"].get("ok", 0)
    lost = await b.close_listeners()
    # Wait until the server let go of the connections (its database pool may have grown).
    await fds_back_to(b.pid, None if open_fds_count is None else open_fds_count - ok)
    await settle(b.pid)
    after, after_fds = rss_kb(b.pid), open_fds(b.pid)
    per = None if base is None or at_open is None or not ok else round((at_open - base) / ok, 2)
    result = {
        "listeners": n,
        "opened": opened,
        "lost_while_open": lost,
        "rss_baseline_kb": base,
        "rss_open_kb": at_open,
        "rss_per_listener_kb": per,
        "rss_after_kb": after,
        "rss_after_vs_baseline": None if base is None or after is None else round(after / base, 3),
        "server_fds": {"baseline": base_fds, "open": open_fds_count, "after": after_fds},
    }
    notes = f"{ok}/{n} open in {opened['seconds']}s; "
    if base is None:
        notes += "RSS unknown (give --server-pid)"
    else:
        notes += (
            f"RSS {base / 1024:.0f} MB -> {at_open / 1024:.0f} MB ({per} KB/listener)"
            f" -> {after / 1024:.0f} MB after close ({result['rss_after_vs_baseline']}x baseline);"
            f" server fds {base_fds} -> {open_fds_count} -> {after_fds}"
        )
    b.emit(f"idle-capacity ({n} listeners)", {"n": ok}, notes)
    return result


async def fan_out(b: Bench) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for n in b.sizes.fanout:
        space = await b.new_space("fanout")
        opened = await b.listen(space, n, 200)
        ok = opened["counts"].get("ok", 0)
        conn, group, client = b.connection(), "g-" + secrets.token_hex(6), "c-" + secrets.token_hex(6)
        latencies: list[float] = []
        push_latencies: list[float] = []
        missing = 0
        cpu: list[float] = []
        for i in range(1, b.sizes.fanout_pushes + 1):
            started = time.monotonic()
            push_latencies.append(await push_once(conn, space, group, client, i))
            replies = await asyncio.gather(
                *(w.call({"cmd": "await_pokes", "since": started, "timeout": 30.0}) for w in b.workers)
            )
            for r in replies:
                latencies += [a - started for a in r["arrivals"]]
                missing += r["missing"]
                cpu.append(r["cpu"])
        conn.close()
        await b.close_listeners()
        result = {
            **report.latency_summary(latencies),
            "listeners": n,
            "opened": ok,
            "pushes": b.sizes.fanout_pushes,
            "missing": missing,
            "push": report.latency_summary(push_latencies),
            "listener_procs": len(b.workers),
        }
        results[str(n)] = result
        b.sample("fan-out", f"{n} listeners", latencies)
        notes = f"{ok}/{n} open; missed pokes {missing}; push p50 {result['push']['p50_ms']} ms"
        notes += f"; listeners in {len(b.workers)} processes"
        b.emit(f"fan-out ({n} listeners)", result, notes)
    return results


async def connect_burst(b: Bench) -> dict[str, Any]:
    n = b.sizes.burst
    space = await b.new_space("burst")
    opened = await b.listen(space, n, 0)
    await b.close_listeners()
    counts = opened["counts"]
    result = {"listeners": n, **opened, "ok": counts.get("ok", 0), "reset": counts.get("reset", 0)}
    others = {k: v for k, v in counts.items() if k not in ("ok", "reset")}
    notes = f"ok {result['ok']}, reset {result['reset']}, other {others or 0} in {opened['seconds']}s"
    b.emit(f"connect-burst ({n} at once)", {"n": result["ok"]}, notes)
    return result


RUNNERS: dict[str, Callable[[Bench], Awaitable[dict[str, Any]]]] = {
    "push-single": push_single,
    "pull": pull,
    "push-contention": push_contention,
    "idle-capacity": idle_capacity,
    "fan-out": fan_out,
    "connect-burst": connect_burst,
    "scale": scale,
    "soak": soak.soak,
}
