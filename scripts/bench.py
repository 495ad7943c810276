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
import json
import sys
from pathlib import Path

import _bench_report as report
import _bench_soak as soak
from _bench_core import QUICK, Sizes
from _bench_http import is_loopback, split_url
from _bench_run import run
from _bench_scenarios import OPT_IN, SCENARIOS

from server.testing import raise_open_files


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


def check_open_files(sizes: Sizes) -> None:
    """Raise the open-files limit (inherited by the server and workers); refuse what cannot fit."""
    limit = raise_open_files()
    biggest = max([sizes.idle, sizes.burst, *sizes.fanout])
    if biggest + 200 > limit:
        raise SystemExit(
            f"{biggest} listeners need more open files than the hard limit {limit} allows"
            " (raise it with ulimit -Hn as root)"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarize:
        runs = [json.loads(Path(p).read_text()) for p in args.summarize]
        print("\n".join(report.targets(runs)))
        return 0
    sizes = sizes_from(args)
    check_open_files(sizes)
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
