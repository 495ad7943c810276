"""One run of scripts/bench.py: the server under test (started here, or --url), the load
workers, the scenarios in order within --max-seconds, and the clean-up.

Everything it starts lives in one temporary directory (data dirs of the servers it starts,
the scale scenario's databases); every server and worker is stopped first, then the
directory is removed, on every exit: done, --max-seconds, an error, Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import _bench_report as report
from _bench_core import ONE_ADDRESS, Bench, Sizes, start_server
from _bench_proc import rss_kb
from _bench_scenarios import RUNNERS
from _bench_workers import Worker

from server.testing import LiveServer


async def run(args: argparse.Namespace, sizes: Sizes) -> Bench:
    flags = ["--log-level", "warning", *ONE_ADDRESS, *args.server_arg]
    # ignore_cleanup_errors: a server killed after a stop timed out may leave its database
    # process writing for a moment; what it leaves is then the only trace of the run.
    with tempfile.TemporaryDirectory(prefix="replicache-bench-", ignore_cleanup_errors=True) as tmp:
        server: LiveServer | None = None
        workers: list[Worker] = []
        try:
            if args.url:
                url, pid = args.url, args.server_pid
            else:
                server = await start_server(tempfile.mkdtemp(dir=tmp), flags)
                url, pid = server.url, server.pid
            for _ in range(args.procs):
                workers.append(await Worker.start())
            b = Bench(
                url=url,
                pid=pid,
                sizes=sizes,
                workers=workers,
                writer_procs=args.writer_procs,
                timeout=args.timeout,
                server_flags=flags,
                compare_url=args.compare_url,
                tmp=tmp,
            )
            b.results["meta"] = meta(args, b, sizes, server is not None)
            await scenarios(args, b)
            if server is not None:
                b.results["meta"]["server_rss_end_kb"] = rss_kb(server.pid)
        finally:
            await asyncio.gather(*(w.stop() for w in workers))
            if server is not None:
                await asyncio.to_thread(server.close)
    return b


def meta(args: argparse.Namespace, b: Bench, sizes: Sizes, started_here: bool) -> dict[str, object]:
    """What the run was (in the JSON), printed as the heading of its table."""
    info = {
        "title": f"replicache-tornado bench {time.strftime('%Y-%m-%d %H:%M:%S')}"
        f" on {os.cpu_count()} cores{' (quick)' if args.quick else ''}",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "url": b.url,
        "server_started_here": started_here,
        "server_flags": b.server_flags if started_here else None,
        "sizes": {**sizes.__dict__, "fanout": list(sizes.fanout), "soak": sizes.soak.__dict__},
        "load_processes": args.procs,
        "writer_processes": args.writer_procs,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(info["title"])
    print(f"server {b.url}" + (f" (started here: {' '.join(b.server_flags)})" if started_here else ""))
    print(
        f"load from {args.procs} worker processes (SSE listeners split across them; push-contention"
        f" writers in {args.writer_procs}); one Python process cannot read thousands of streams fast enough"
    )
    print(report.header(), flush=True)
    return info


async def scenarios(args: argparse.Namespace, b: Bench) -> None:
    try:
        async with asyncio.timeout(args.max_seconds):
            for name in args.scenarios:
                b.results[name] = await RUNNERS[name](b)
    except TimeoutError:
        print(f"stopped: --max-seconds {args.max_seconds} reached; results so far are kept", flush=True)
        b.results["meta"]["stopped_early"] = True
