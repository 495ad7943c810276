#!/usr/bin/env python3
"""Create spaces, optionally with initial entries, on a Replicache sync server.

Which spaces (combine freely; duplicates are dropped):
  ID [ID ...]                 explicit space ids ([A-Za-z0-9_-]{1,64})
  --prefix P --number N       generated ids P1 .. PN (--start changes the first number)
  --from-json FILE            {"spaceID": {"key": value, ...}, ...}: ids and their entries

Initial entries: --set KEY=JSON (repeatable) writes KEY to every space, e.g. --set count=5;
a space's entries from --from-json win over --set.

Three ways in:
  --url URL (default)  the server's HTTP API; works against a remote server. Creating is
      createSpace. Entries go in as ordinary pushes from a seed client (client group and
      client id "seed-<spaceID>"), so they can only be what the server's mutators write:
      with the built-in mutators that is `count` (a number), set through `increment` by the
      difference from the current value. The server deliberately has no "put any key"
      mutator: every browser could call it.
  --url URL --admin-token TOKEN  the server's admin API (the server runs with the same
      --admin-token; ADMIN_TOKEN in the environment works too): any key, any JSON value,
      written as the server (PUT /admin/api/spaces/<id>/entries/<key>), so the space's
      listeners are poked. Creating is POST /admin/api/spaces, which works with --auth-secret.
  --direct MONGODB_URI  write through the server's Store into the database, with a seed-only
      mutator that puts any key. Use it for a fresh deployment or a stopped server: a
      running server is not poked for these writes, and one that already served a space
      from its in-memory version (pull cache) may keep answering its clients "unchanged".

Idempotent: an existing space is reported as existing, not an error, and re-running never
doubles a count. Without --admin-token, entries are written once per space (the seed
client's mutation ids make a second run a no-op, reported as "already seeded"). With it,
each run sets the keys to the given values: "already seeded" when they all held them
already (the space's version did not move), "seeded" when any changed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from server.protocol import SPACE_ID, RequestError, parse_json, parse_pull, parse_push
from server.testing import mutation, pull_body, push_body

SHOWN_URLS = 5
PROGRESS_FROM = 20  # spaces: below this no progress bar


def seed_ids(space_id: str) -> tuple[str, str]:
    """The seed client group and client id of a space: fixed, so a re-run is recognised."""
    return f"seed-{space_id}", f"seed-{space_id}"


def parse_set(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set wants KEY=JSON, got {item!r}")
    try:
        return key, parse_json(raw.encode())
    except RequestError as e:
        raise argparse.ArgumentTypeError(
            f"--set {key}: {e.message} (strings need JSON quotes: --set {key}='\"text\"')"
        ) from None


@dataclass
class Plan:
    """Space ids in order, each with the entries to write (maybe none)."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, space_id: str, values: dict[str, Any]) -> None:
        if not SPACE_ID.fullmatch(space_id):
            raise SystemExit(f"bad space id {space_id!r}: ids match [A-Za-z0-9_-]{{1,64}}")
        self.entries.setdefault(space_id, {}).update(values)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = Plan()
    defaults = dict(args.set)
    for space_id in args.ids:
        plan.add(space_id, defaults)
    if args.number:
        if not args.prefix:
            raise SystemExit("--number needs --prefix")
        for i in range(args.start, args.start + args.number):
            plan.add(f"{args.prefix}{i}", defaults)
    if args.from_json:
        try:
            data = parse_json(Path(args.from_json).read_bytes())
        except (OSError, RequestError) as e:
            raise SystemExit(f"--from-json {args.from_json}: {getattr(e, 'message', e)}") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise SystemExit('--from-json wants {"spaceID": {"key": value}, ...}')
        for space_id, values in data.items():
            plan.add(space_id, {**defaults, **values})
    if not plan.entries:
        raise SystemExit("no spaces given: pass IDs, --prefix/--number or --from-json (see --help)")
    return plan


def check_http_entries(plan: Plan) -> None:
    """Over HTTP only what a server mutator can write is possible; say so before any request."""
    for space_id, values in plan.entries.items():
        for key, value in values.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if key != "count" or not number:
                raise SystemExit(
                    f"space {space_id}: cannot set {key}={json.dumps(value)} through pushes: the built-in"
                    " mutator is increment, so only a numeric `count` can be seeded;"
                    " use --direct, or --admin-token to write through the admin API"
                )


# ---- over HTTP


class HttpSeeder:
    def __init__(self, url: str, concurrency: int, timeout: float, admin_token: str = "") -> None:
        from tornado.httpclient import AsyncHTTPClient

        self.url = url.rstrip("/")
        self.http = AsyncHTTPClient(force_instance=True, max_clients=concurrency)
        self.timeout = timeout
        self.admin_token = admin_token

    async def _send(self, path: str, body: Any, method: str = "POST") -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if self.admin_token:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        response = await self.http.fetch(
            self.url + path,
            method=method,
            body=None if method == "GET" else json.dumps(body, ensure_ascii=False),
            headers=headers,
            raise_error=False,
            request_timeout=self.timeout,
        )
        if response.code == 599:  # no HTTP answer at all
            raise ConnectionError(str(response.error))
        text = response.body.decode() if response.body else ""
        try:
            return response.code, json.loads(text) if text else None
        except ValueError:
            return response.code, text[:200]

    async def create(self, space_id: str) -> bool:
        """True when created, False when it existed."""
        path, created = "/api/replicache/createSpace", 200
        if self.admin_token:
            path, created = "/admin/api/spaces", 201
        status, body = await self._send(path, {"spaceID": space_id})
        if status == 409:
            return False
        if status != created:
            raise RuntimeError(f"{path} answered {status}: {body}")
        return True

    async def seed(self, space_id: str, values: dict[str, Any]) -> bool:
        """True when written now, False when this space was seeded before."""
        if self.admin_token:
            return await self._put_each(space_id, values)
        group, client = seed_ids(space_id)
        query = f"?spaceID={quote(space_id)}"
        status, body = await self._send("/api/replicache/pull" + query, pull_body(group, profile="seed"))
        if status != 200 or not isinstance(body, dict) or "cookie" not in body:
            raise RuntimeError(f"pull answered {status}: {body}")
        if body.get("lastMutationIDChanges", {}).get(client, 0) >= 1:
            return False
        current = next((op["value"] for op in body["patch"] if op.get("key") == "count"), 0)
        if not isinstance(current, int | float) or isinstance(current, bool):
            raise RuntimeError(f"count holds a non-number {current!r}; not changed")
        delta = values["count"] - current
        push = push_body(group, [mutation(1, client, args=delta, timestamp=0)], profile="seed")
        status, body = await self._send("/api/replicache/push" + query, push)
        if status != 200 or body:
            raise RuntimeError(f"push answered {status}: {body}")
        return True

    async def _put_each(self, space_id: str, values: dict[str, Any]) -> bool:
        """Each key set as the server (admin API); True when the space's version moved."""
        space = f"/admin/api/spaces/{quote(space_id)}"
        status, body = await self._send(space, None, method="GET")
        if status != 200:
            raise RuntimeError(f"GET {space} answered {status}: {body}")
        before = version = body["version"]
        for key, value in values.items():
            status, body = await self._send(f"{space}/entries/{quote(key, safe='')}", value, method="PUT")
            if status != 200:
                raise RuntimeError(f"PUT {key!r} answered {status}: {body}")
            version = body["version"]
        return version != before

    async def close(self) -> None:
        self.http.close()


# ---- through the Store


async def seed_put(tx: Any, args: Any) -> None:
    """The seed-only mutator: put one key. Registered only in this script's Store."""
    if not isinstance(args, dict) or not isinstance(args.get("key"), str) or "value" not in args:
        raise TypeError(f"seed-put expects {{key, value}}, got {args!r}")
    await tx.put(args["key"], args["value"])


class DirectSeeder:
    def __init__(self, uri: str, db_name: str) -> None:
        from pymongo import AsyncMongoClient

        from server.store import Store

        self.client: Any = AsyncMongoClient(uri, serverSelectionTimeoutMS=10_000)
        self.store = Store(self.client, db_name, mutators={"seed-put": seed_put})

    async def start(self) -> None:
        await self.store.init()

    async def create(self, space_id: str) -> bool:
        try:
            await self.store.create_space(space_id)
        except RequestError as e:
            if e.status == 409:
                return False
            raise
        return True

    async def seed(self, space_id: str, values: dict[str, Any]) -> bool:
        group, client = seed_ids(space_id)
        seen = json.loads(await self.store.pull(space_id, parse_pull(pull_body(group, profile="seed"))))
        if seen.get("lastMutationIDChanges", {}).get(client, 0) >= 1:  # this seed was applied
            return False
        mutations = [
            mutation(i, client, "seed-put", {"key": k, "value": v}, timestamp=0)
            for i, (k, v) in enumerate(sorted(values.items()), start=1)
        ]
        answer = await self.store.push(space_id, parse_push(push_body(group, mutations, profile="seed")))
        if answer:
            raise RuntimeError(f"push refused: {answer}")
        return True

    async def close(self) -> None:
        await self.store.drain()
        await self.client.close()


# ---- the run


async def run(args: argparse.Namespace, plan: Plan) -> Counter[str]:
    seeder: Any
    if args.direct:
        seeder = DirectSeeder(args.direct, args.db_name)
        await seeder.start()
    else:
        seeder = HttpSeeder(args.url, args.concurrency, args.timeout, args.admin_token)
    outcome: Counter[str] = Counter()
    errors: list[str] = []
    bar = progress(len(plan.entries), args.no_progress)
    gate = asyncio.Semaphore(args.concurrency)

    async def one(space_id: str, values: dict[str, Any]) -> None:
        async with gate:
            try:
                outcome["created" if await seeder.create(space_id) else "existed"] += 1
                if values:
                    outcome["seeded" if await seeder.seed(space_id, values) else "already seeded"] += 1
            except Exception as e:  # one space's failure must not stop the others
                outcome["failed"] += 1
                errors.append(f"{space_id}: {e}")
            bar(1)

    try:
        await asyncio.gather(*(one(s, v) for s, v in plan.entries.items()))
    finally:
        bar(0, close=True)
        await seeder.close()
    for line in errors[:10]:
        print("error:", line, file=sys.stderr)
    if len(errors) > 10:
        print(f"error: ... and {len(errors) - 10} more", file=sys.stderr)
    return outcome


def progress(total: int, disabled: bool) -> Callable[..., None]:
    """A tqdm bar on stderr for large runs; a no-op otherwise."""
    if disabled or total < PROGRESS_FROM:
        return lambda n, close=False: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="space", file=sys.stderr)

    def step(n: int, close: bool = False) -> None:
        bar.update(n)
        if close:
            bar.close()

    return step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/seed_spaces.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ids", nargs="*", metavar="ID", help="space ids to create")
    parser.add_argument("--prefix", help="prefix of generated ids (with --number)")
    parser.add_argument("--number", type=int, default=0, help="how many ids to generate: PREFIX1 .. PREFIXN")
    parser.add_argument("--start", type=int, default=1, help="first generated number (default 1)")
    parser.add_argument("--from-json", metavar="FILE", help='a file of {"spaceID": {"key": value}}')
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=parse_set,
        metavar="KEY=JSON",
        help="an initial entry for every space, repeatable (e.g. --set count=5)",
    )
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8888",
        help="the server (default %(default)s); with --direct only used for the printed links",
    )
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("ADMIN_TOKEN", ""),
        help="write any key through the server's admin API (default: the ADMIN_TOKEN environment variable)",
    )
    parser.add_argument("--direct", metavar="MONGODB_URI", help="write through the Store into this database")
    parser.add_argument(
        "--db-name", default="replicache", help="with --direct: database name (default %(default)s)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="spaces worked on at once (default 16)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="per-request timeout, seconds (default 30)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.number < 0:
        parser.error("--concurrency must be at least 1 and --number not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    if not args.direct and not args.admin_token:
        check_http_entries(plan)
    outcome = asyncio.run(run(args, plan))
    total = len(plan.entries)
    parts = [f"{outcome[k]} {k}" for k in ("created", "existed", "seeded", "already seeded", "failed")]
    print(f"{total} spaces: " + ", ".join(parts))
    base = args.url.rstrip("/")
    for space_id in list(plan.entries)[:SHOWN_URLS]:
        print(f"  {base}/space/{quote(space_id)}")
    if total > SHOWN_URLS:
        print(f"  ... and {total - SHOWN_URLS} more")
    return 1 if outcome["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
