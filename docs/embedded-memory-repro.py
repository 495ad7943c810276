#!/usr/bin/env python3
"""secantusdb's RSS grows with every multi-document transaction: a reproduction.

Needs only pymongo and the `secantusd-py` command (pip install secantusdb pymongo).
Starts a fresh secantusd-py in a temporary directory for each case, runs N operations
of two updates each from one PyMongo client, and prints the server's RSS growth per
operation:

  transaction          with_transaction, a new session each time (the usual pattern)
  one-session          with_transaction, one session reused for every transaction
  no-transaction       the same two updates without a transaction (the control)

and the first and last again with a small cache and oplog.

    python3 docs/embedded-memory-repro.py [N]      (default 20000)

Measured with secantusdb 0.7.0b3, pymongo 4.20.1, Python 3.11 (docs/embedded-memory.md):
about 2.5 KB per transaction in both transaction cases, with or without
--cache-size 16M --oplog-max-entries 2000, and no lasting growth without transactions.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymongo import MongoClient, WriteConcern
from pymongo.read_concern import ReadConcern


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(case: str, n: int, extra: list[str]) -> None:
    home = tempfile.mkdtemp(prefix="secantus-repro-")
    config = Path(home) / "empty.toml"  # no secantusd.toml from the working directory
    config.write_text("")
    port = free_port()
    server = subprocess.Popen(
        ["secantusd-py", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        + ["--storage-path", str(Path(home) / "db"), "--log-level", "WARNING", *extra]
    )
    try:
        client: MongoClient = MongoClient(
            f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true",
            serverSelectionTimeoutMS=30000,
        )
        db = client.get_database("repro", write_concern=WriteConcern(w="majority", j=True))
        db.a.update_one({"_id": 1}, {"$set": {"v": 0}}, upsert=True)
        db.b.update_one({"_id": 1}, {"$set": {"v": 0}}, upsert=True)

        def two_updates(session=None) -> None:
            db.a.update_one({"_id": 1}, {"$inc": {"v": 1}}, session=session)
            db.b.update_one({"_id": 1}, {"$inc": {"v": 1}}, session=session)

        one = client.start_session()
        warmup = n // 10
        for i in range(n + warmup):
            if i == warmup:  # first allocations (caches, connection threads) are not growth
                start, started = rss_kb(server.pid), time.monotonic()
            if case == "transaction":
                with client.start_session() as s:
                    s.with_transaction(two_updates, read_concern=ReadConcern("snapshot"))
            elif case == "one-session":
                one.with_transaction(two_updates, read_concern=ReadConcern("snapshot"))
            else:
                two_updates()
        grown = rss_kb(server.pid) - start
        rate = n / (time.monotonic() - started)
        flags = " ".join(extra)
        print(
            f"{case:16} {flags:42} +{grown / 1024:7.1f} MB over {n}"
            f" = {grown * 1024 / n:6.0f} B each ({rate:.0f}/s)"
        )
        one.end_session()
        client.close()
    finally:
        server.terminate()  # it may miss a SIGTERM that lands on another thread: then kill it
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    for case in ("transaction", "one-session", "no-transaction"):
        run(case, n, [])
    bounded = ["--cache-size", "16M", "--oplog-max-entries", "2000"]
    run("transaction", n, bounded)  # the cache and the oplog are not it
    run("no-transaction", n, bounded)


if __name__ == "__main__":
    main()
