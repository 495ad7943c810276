#!/usr/bin/env python3
"""Back up one space to a file, or restore it from one, over a server's admin API.

  export SPACE FILE   GET /admin/api/spaces/SPACE/export into FILE. The download is checked
                      as it arrives (every key and value) and FILE appears only once the
                      whole backup came: an interrupted export leaves no half file.
  import SPACE FILE   POST FILE to /admin/api/spaces/SPACE/import: SPACE's entries become
                      exactly the backup's, in one transaction. SPACE may be another id (a
                      copy: the original is untouched) or a new one (created). Restoring over
                      a space in use ends its client groups: their tabs start over from the
                      restored state. FILE is checked before anything is sent.

The server needs --admin-token; pass the same token here (--admin-token, or the ADMIN_TOKEN
environment variable, which keeps it out of the process list). A backup larger than the
server's MAX_IMPORT_BYTES (64 MB by default) is refused with 413.

Progress bars (stderr) for exports of 1000 entries or more and imports of 1 MB or more;
--no-progress hides them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from server.backup import BackupReader
from server.protocol import SPACE_ID, RequestError

PROGRESS_ENTRIES = 1000  # an export shows progress from this many entries
PROGRESS_BYTES = 1 << 20  # an import from a file this large
CHUNK = 1 << 16


class Failed(Exception):
    """One line for the user."""


def progress(total: int | None, unit: str, disabled: bool) -> Callable[..., None]:
    """A tqdm bar on stderr; a no-op when disabled."""
    if disabled:
        return lambda n, close=False: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, unit_scale=unit == "B", file=sys.stderr)

    def step(n: int, close: bool = False) -> None:
        bar.update(n)
        if close:
            bar.close()

    return step


def refusal(status: int, body: bytes, what: str) -> Failed:
    try:
        error = json.loads(body)
        detail = f"{error['error']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        detail = body[:200].decode("utf-8", "replace") or "no answer"
    if status == 401:
        detail += " (is --admin-token the server's?)"
    if status == 404 and b"NotFound" in body and b"SpaceNotFound" not in body:
        detail += " (does the server run with --admin-token?)"
    return Failed(f"{what}: HTTP {status}: {detail}")


async def export(args: argparse.Namespace, http: Any) -> str:
    target = Path(args.file)
    partial = target.with_name(target.name + ".part")
    reader = BackupReader(keep=False)
    state: dict[str, Any] = {"status": 0, "error": b"", "bar": None, "broken": None, "shown": 0}
    out = partial.open("wb")

    def header(line: str) -> None:
        if line.startswith("HTTP/"):
            state["status"] = int(line.split()[1])

    def body(chunk: bytes) -> None:
        if state["status"] != 200:
            state["error"] += chunk[:1000]
            return
        if state["broken"] is not None:
            return
        out.write(chunk)
        try:
            reader.feed(chunk)
        except RequestError as e:
            state["broken"] = e
            return
        if state["bar"] is None:
            total = reader.space.get("entries")
            show = isinstance(total, int) and total >= PROGRESS_ENTRIES and not args.no_progress
            state["bar"] = progress(total, "entry", not show)
        shown(reader.count)

    def shown(count: int) -> None:
        state["bar"](count - state["shown"])
        state["shown"] = count

    try:
        response = await http.fetch(
            f"{args.url}/admin/api/spaces/{quote(args.space)}/export",
            headers={"Authorization": f"Bearer {args.admin_token}"},
            header_callback=header,
            streaming_callback=body,
            raise_error=False,
            connect_timeout=10,
            request_timeout=args.timeout,
        )
        if response.code == 599:
            raise Failed(f"export: no answer from {args.url}: {response.error}")
        if response.code != 200:
            raise refusal(response.code, state["error"], "export")
        if state["broken"] is not None:
            raise state["broken"]
        reader.finish()
        if state["bar"] is not None:
            shown(reader.count)
        out.close()
        os.replace(partial, target)  # only a whole backup gets the name
    except RequestError as e:
        raise Failed(f"export: the server sent a broken backup ({e.message})") from None
    finally:
        out.close()
        partial.unlink(missing_ok=True)
        if state["bar"] is not None:
            state["bar"](0, close=True)
    size = target.stat().st_size
    return f"exported {reader.count} entries of space {args.space} to {target} ({size} bytes)"


def check_file(path: Path, no_progress: bool) -> BackupReader:
    """The whole file, read as the server will: a bad backup is refused before sending."""
    reader = BackupReader(keep=False)
    size = path.stat().st_size
    bar = progress(size, "B", no_progress or size < PROGRESS_BYTES)
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                reader.feed(chunk)
                bar(len(chunk))
        reader.finish()
    except RequestError as e:
        raise Failed(f"{path} is not a backup this server reads: {e.message}") from None
    finally:
        bar(0, close=True)
    return reader


async def restore(args: argparse.Namespace, http: Any) -> str:
    path = Path(args.file)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise Failed(f"import: cannot read {path}: {e.strerror}") from None
    check_file(path, args.no_progress)
    bar = progress(size, "B", args.no_progress or size < PROGRESS_BYTES)

    async def produce(write: Callable[[bytes], Any]) -> None:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                await write(chunk)
                bar(len(chunk))

    try:
        response = await http.fetch(
            f"{args.url}/admin/api/spaces/{quote(args.space)}/import",
            method="POST",
            headers={
                "Authorization": f"Bearer {args.admin_token}",
                "Content-Type": "application/json",
                "Content-Length": str(size),
            },
            body_producer=produce,
            raise_error=False,
            connect_timeout=10,
            request_timeout=args.timeout,
        )
    finally:
        bar(0, close=True)
    if response.code == 599:
        raise Failed(f"import: no answer from {args.url}: {response.error}")
    if response.code != 200:
        raise refusal(response.code, response.body or b"", "import")
    done = json.loads(response.body)
    return (
        f"imported {done['entries']} entries into space {done['spaceID']} (version {done['version']});"
        " its old client groups start over"
    )


async def run(args: argparse.Namespace) -> str:
    from tornado.httpclient import AsyncHTTPClient

    http = AsyncHTTPClient(force_instance=True, max_body_size=1 << 40)
    try:
        return await (export(args, http) if args.command == "export" else restore(args, http))
    finally:
        http.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/space_backup.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["export", "import"])
    parser.add_argument("space", metavar="SPACE", help="the space id")
    parser.add_argument("file", metavar="FILE", help="the backup file (JSON)")
    parser.add_argument("--url", default="http://127.0.0.1:8888", help="the server (default %(default)s)")
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("ADMIN_TOKEN", ""),
        help="the server's admin token (default: the ADMIN_TOKEN environment variable)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds the whole transfer may take (default 600)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not SPACE_ID.fullmatch(args.space):
        parser.error(f"bad space id {args.space!r}: ids match [A-Za-z0-9_-]{{1,64}}")
    if not args.admin_token:
        parser.error("no admin token: pass --admin-token or set ADMIN_TOKEN")
    args.url = args.url.rstrip("/")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        print(asyncio.run(run(args)))
    except Failed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
