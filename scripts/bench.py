#!/usr/bin/env python3
"""Load generator and benchmark for the Replicache sync server.

Points at a running server (--url) or starts its own (`python -m server` on an
embedded database in a temporary directory, plus a second one with
--no-group-commit for the push-contention comparison). Scenarios:

  push-single      one writer, sequential pushes of one increment: latency
  pull             pulls with an unchanged cookie, and one change behind: latency
  push-contention  C writers (own client groups, one increment per push) for T seconds
                   on ONE space, on C spaces, and on one space without group commit:
                   accepted pushes/s, latency, non-200 count
  idle-capacity    L idle SSE listeners: server RSS per listener, and after they close
                   (on a fresh server: memory of closed connections is kept and reused)
  fan-out          L SSE listeners on one space, then pushes: push start to poke arrival
  connect-burst    L SSE connections opened at once: how many succeeded, were reset
  scale            createSpace, first push, first pull and the admin list on a fresh
                   database and on one holding N spaces (made directly): p50s and ratios
  soak             (only when named) minutes of pushes, pulls and SSE listeners coming and
                   going: RSS slope per push of the server and of its embedded database

Every scenario prints a table row; --json writes all results, --plot a PNG. Load is
bounded in count and time and goes to loopback addresses only unless --allow-remote.
Listeners and writers run in separate worker processes (--procs, --writer-procs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _bench_report as report  # noqa: E402
import _bench_soak as soak  # noqa: E402
from _bench_http import Connection, is_loopback, pull_body, push_body, split_url  # noqa: E402
from _bench_load import raise_open_files_limit  # noqa: E402
from _bench_scale import scale  # noqa: E402

from server.embedded import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "_bench_load.py"
SCENARIOS = ("push-single", "pull", "push-contention", "idle-capacity", "fan-out", "connect-burst", "scale")
OPT_IN = ("soak",)  # run only when named in --scenarios
WRITER_CPU_LIMIT = 0.8  # a load process busier than this may be the bottleneck
# Thousands of clients from one loopback address: lift the per-address caps of a server
# started here (README Threat model). A --url server needs them lifted, or 0, too.
ONE_ADDRESS = ["--max-connections-per-address", "0", "--poke-max-per-address", "0"]


@dataclass
class Sizes:
    writers: int = 20
    seconds: float = 10.0
    count: int = 500
    fanout: tuple[int, ...] = (1000, 5000)
    fanout_pushes: int = 20
    idle: int = 10_000
    burst: int = 10_000
    spaces: int = 20_000
    soak: soak.SoakSizes = field(default_factory=soak.SoakSizes)


QUICK = Sizes(
    writers=4,
    seconds=1.0,
    count=30,
    fanout=(20, 50),
    fanout_pushes=3,
    idle=100,
    burst=100,
    spaces=200,
    soak=soak.QUICK,
)


# ---- the server under test


class ServerProcess:
    """`python -m server` on a free loopback port with its own embedded database."""

    def __init__(self, data_dir: str, flags: list[str]) -> None:
        self.args = [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(free_port())]
        self.args += ["--data-dir", data_dir, *flags]
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self.url = ""

    def start(self, timeout: float = 120.0) -> ServerProcess:
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            # Its own embedded database, and no tokens: this script does not send any.
            env={**os.environ, "PYTHONUNBUFFERED": "1", "MONGODB_URI": "", "AUTH_SECRET": ""},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def read() -> None:  # keeps draining so the server never blocks on a full pipe
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line)
                found = re.match(r"listening on (http://\S+)", line)
                if found:
                    self.url = found.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.output[-30:]))
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def open_fds(pid: int | None) -> int | None:
    return None if pid is None else len(os.listdir(f"/proc/{pid}/fd"))


async def fds_back_to(pid: int | None, target: int | None, timeout: float = 30.0) -> None:
    """Poll (bounded) until the server holds no more than `target` (+10) file descriptors."""
    deadline = time.monotonic() + timeout
    while pid is not None and target is not None and time.monotonic() < deadline:
        if (open_fds(pid) or 0) <= target + 10:
            return
        await asyncio.sleep(0.2)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


async def settle(pid: int | None, timeout: float = 30.0) -> None:
    """Wait until the server is nearly idle (under ~5 % CPU over half a second), bounded.
    Not fully idle: heartbeats of thousands of listeners keep it a little busy."""
    if pid is None:
        await asyncio.sleep(2.0)
        return
    deadline = time.monotonic() + timeout
    before = cpu_ticks(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = cpu_ticks(pid)
        if now - before <= 2:  # clock ticks, normally 100 a second
            return
        before = now


# ---- load worker processes


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=1 << 26
        )
        return cls(process)

    async def call(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError("a load worker exited")
        return json.loads(line)

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(RuntimeError, ConnectionError, json.JSONDecodeError):
                await self.call({"cmd": "quit"})
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# ---- the run


@dataclass
class Bench:
    url: str
    pid: int | None
    sizes: Sizes
    workers: list[Worker]
    writer_procs: int
    timeout: float
    server_flags: list[str]
    compare_url: str | None
    results: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    tmp: str = ""

    def connection(self, url: str | None = None) -> Connection:
        host, port = split_url(url or self.url)
        return Connection(host, port, self.timeout)

    async def new_space(self, label: str, url: str | None = None) -> str:
        space = f"bench-{label}-{secrets.token_hex(4)}"
        status, body = await self.connection(url).post_json("/api/replicache/createSpace", {"spaceID": space})
        if status != 200:
            raise RuntimeError(f"createSpace failed: {status} {body}")
        return space

    def emit(self, name: str, result: dict[str, Any], notes: str = "") -> None:
        print(report.row(name, result, notes), flush=True)

    def sample(self, chart: str, label: str, values: list[float]) -> None:
        self.samples.setdefault(chart, {})[label] = values

    async def listen(self, space: str, n: int, concurrency: int) -> dict[str, Any]:
        """Open n listeners split over the workers; counts of outcomes summed."""
        shares = split(n, len(self.workers))
        replies = await asyncio.gather(
            *(
                w.call(
                    {
                        "cmd": "listen",
                        "url": self.url,
                        "space": space,
                        "n": share,
                        "concurrency": concurrency,
                        "timeout": max(self.timeout, 60.0),
                    }
                )
                for w, share in zip(self.workers, shares, strict=True)
            )
        )
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for reply in replies:
            counts.update(reply["counts"])
            examples.update(reply["examples"])
        return {
            "counts": dict(counts),
            "examples": examples,
            "seconds": round(max(r["seconds"] for r in replies), 3),
            "worker_cpu": [round(r["cpu"], 2) for r in replies],
        }

    async def close_listeners(self) -> int:
        replies = await asyncio.gather(*(w.call({"cmd": "close"}) for w in self.workers))
        return sum(r["lost_before_close"] for r in replies)


async def push_once(conn: Connection, space: str, group: str, client: str, mutation_id: int) -> float:
    started = time.perf_counter()
    status, body = await conn.request(
        "POST", f"/api/replicache/push?spaceID={quote(space)}", push_body(group, client, mutation_id)
    )
    if status != 200 or body.strip() != b"{}":
        raise RuntimeError(f"push answered {status}: {body[:200]!r}")
    return time.perf_counter() - started


async def pull_once(conn: Connection, space: str, group: str, cookie: Any) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    status, body = await conn.request(
        "POST", f"/api/replicache/pull?spaceID={quote(space)}", pull_body(group, cookie)
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
    server = await asyncio.to_thread(ServerProcess(data_dir, ["--no-group-commit", *b.server_flags]).start)
    try:
        return await contention(b, server.url, 1, label)
    finally:
        await asyncio.to_thread(server.stop)


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
    "scale": lambda b: scale(b, lambda data_dir, flags: ServerProcess(data_dir, flags).start()),
    "soak": soak.soak,
}


# ---- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_argument_group("the server under test")
    where.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8888 (default: start one)")
    where.add_argument(
        "--compare-url", help="with --url: a second server run with --no-group-commit, for push-contention"
    )
    where.add_argument("--server-pid", type=int, help="with --url: the server's pid, to read its RSS")
    where.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for a server this script starts, repeatable (e.g. --server-arg=--log-level=info)",
    )
    where.add_argument(
        "--allow-remote", action="store_true", help="allow a --url that is not on this machine (loopback)"
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {', '.join(SCENARIOS + OPT_IN)} (default: all but the last)",
    )
    what.add_argument("--quick", action="store_true", help="every scenario at a tiny size (a smoke test)")
    d = Sizes()
    what.add_argument("--writers", type=int, help=f"push-contention: writers C (default {d.writers})")
    what.add_argument("--seconds", type=float, help=f"push-contention: seconds T (default {d.seconds})")
    what.add_argument("--count", type=int, help=f"push-single and pull: requests each (default {d.count})")
    what.add_argument(
        "--fanout",
        help=f"fan-out: comma-separated listener counts L (default {','.join(map(str, d.fanout))})",
    )
    what.add_argument("--fanout-pushes", type=int, help=f"fan-out: pushes per L (default {d.fanout_pushes})")
    what.add_argument("--idle", type=int, help=f"idle-capacity: listeners (default {d.idle})")
    what.add_argument("--burst", type=int, help=f"connect-burst: connections at once (default {d.burst})")
    what.add_argument(
        "--spaces", type=int, help=f"scale: spaces made before it measures (default {d.spaces})"
    )
    soak.add_arguments(what)
    how = parser.add_argument_group("how")
    how.add_argument(
        "--procs", type=int, default=4, help="load worker processes that hold SSE listeners (default 4)"
    )
    how.add_argument("--writer-procs", type=int, default=1, help="of those, how many run writers (default 1)")
    how.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds (default 30)")
    how.add_argument(
        "--max-seconds", type=float, default=1800.0, help="stop the whole run after this long (default 1800)"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write every result to this JSON file")
    out.add_argument("--plot", metavar="PNG", help="draw latency distributions and bars (matplotlib)")
    out.add_argument(
        "--summarize",
        nargs="+",
        metavar="JSON",
        help="run nothing: print the medians of these --json files against the targets",
    )
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS) - set(OPT_IN))
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    for name in ("url", "compare_url"):
        url = getattr(args, name)
        if url is None:
            continue
        try:
            host, _ = split_url(url)
        except ValueError as e:
            parser.error(str(e))
        if not args.allow_remote and not is_loopback(host):
            parser.error(f"{url} is not a loopback address; load goes to this machine only (--allow-remote)")
    if args.procs < 1 or args.writer_procs < 1:
        parser.error("--procs and --writer-procs must be at least 1")
    return args


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else Sizes()
    overrides = {
        "writers": args.writers,
        "seconds": args.seconds,
        "count": args.count,
        "fanout_pushes": args.fanout_pushes,
        "idle": args.idle,
        "burst": args.burst,
        "spaces": args.spaces,
        "fanout": tuple(int(x) for x in args.fanout.split(",")) if args.fanout else None,
        "soak": soak.sizes_from(args, args.quick),
    }
    return Sizes(**{**sizes.__dict__, **{k: v for k, v in overrides.items() if v is not None}})


def check_open_files(sizes: Sizes, procs: int) -> None:
    """Raise the open-files limit (inherited by the server and workers); refuse what cannot fit."""
    limit = raise_open_files_limit()
    biggest = max([sizes.idle, sizes.burst, *sizes.fanout])
    if biggest + 200 > limit:
        raise SystemExit(
            f"{biggest} listeners need more open files than the hard limit {limit} allows"
            " (raise it with ulimit -Hn as root)"
        )


async def run(args: argparse.Namespace, sizes: Sizes) -> Bench:
    server = None
    tmp = tempfile.mkdtemp(prefix="replicache-bench-")
    if args.url:
        url, pid = args.url, args.server_pid
    else:
        flags = ["--log-level", "warning", *ONE_ADDRESS, *args.server_arg]
        server = await asyncio.to_thread(ServerProcess(tempfile.mkdtemp(dir=tmp), flags).start)
        url, pid = server.url, server.pid
    workers = await asyncio.gather(*(Worker.start() for _ in range(args.procs)))
    b = Bench(
        url=url,
        pid=pid,
        sizes=sizes,
        workers=list(workers),
        writer_procs=args.writer_procs,
        timeout=args.timeout,
        server_flags=["--log-level", "warning", *ONE_ADDRESS, *args.server_arg],
        compare_url=args.compare_url,
        tmp=tmp,
    )
    b.results["meta"] = {
        "title": f"replicache-tornado bench {time.strftime('%Y-%m-%d %H:%M:%S')}"
        f" on {os.cpu_count()} cores{' (quick)' if args.quick else ''}",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "url": url,
        "server_started_here": server is not None,
        "server_flags": b.server_flags if server else None,
        "sizes": {**sizes.__dict__, "fanout": list(sizes.fanout), "soak": sizes.soak.__dict__},
        "load_processes": args.procs,
        "writer_processes": args.writer_procs,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(b.results["meta"]["title"])
    print(f"server {url}" + (f" (started here: {' '.join(b.server_flags)})" if server else ""))
    print(
        f"load from {args.procs} worker processes (SSE listeners split across them; push-contention"
        f" writers in {args.writer_procs}); one Python process cannot read thousands of streams fast enough"
    )
    print(report.header(), flush=True)
    try:
        async with asyncio.timeout(args.max_seconds):
            for name in args.scenarios:
                b.results[name] = await RUNNERS[name](b)
    except TimeoutError:
        print(f"stopped: --max-seconds {args.max_seconds} reached; results so far are kept", flush=True)
        b.results["meta"]["stopped_early"] = True
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
        if server is not None:
            b.results["meta"]["server_rss_end_kb"] = rss_kb(server.pid)
            await asyncio.to_thread(server.stop)
    return b


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarize:
        runs = [json.loads(Path(p).read_text()) for p in args.summarize]
        print("\n".join(report.targets(runs)))
        return 0
    sizes = sizes_from(args)
    check_open_files(sizes, args.procs)
    b = asyncio.run(run(args, sizes))
    print()
    print("\n".join(report.targets([b.results])))
    if args.json:
        Path(args.json).write_text(json.dumps(b.results, indent=2) + "\n")
        print(f"results: {args.json}")
    if args.plot:
        report.plot(b.results, b.samples, args.plot)
        print(f"plot: {args.plot}")
    return 1 if b.results["meta"].get("stopped_early") else 0


if __name__ == "__main__":
    sys.exit(main())
