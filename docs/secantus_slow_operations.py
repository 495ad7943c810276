"""Operations of secantusdb 0.7.0b3 whose cost grows with the size of a collection, or with
its number of indexes, measured against a fresh secantusd-py. Uses only pymongo and the
server's command line (secantusdb is GPL; nothing of it is imported).

    pip install pymongo secantusdb==0.7.0b3
    python docs/secantus_slow_operations.py [--sizes 1000,20000]

Prints, for each collection size, the median milliseconds of each operation.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymongo import ASCENDING, IndexModel, MongoClient, UpdateOne


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    exe = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
    args = [
        exe,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        data_dir,
        "--log-level",
        "WARNING",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    return process, f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"


def ms(fn, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def measure(db, n: int) -> dict[str, float]:
    coll = db[f"c{n}"]
    coll.create_index([("kind", ASCENDING), ("name", ASCENDING)])
    coll.insert_many([{"_id": f"d{i:06d}", "kind": "h", "name": f"d{i:06d}", "v": 0} for i in range(n)])
    plan = db.command("explain", {"find": coll.name, "filter": {"_id": "d000005", "kind": "h"}})
    wide = [IndexModel([(f, ASCENDING)]) for f in ("a", "b", "c", "d")]
    narrow, many = db[f"narrow{n}"], db[f"many{n}"]
    many.create_indexes(wide)
    for c in (narrow, many):
        c.insert_many([{"_id": i, "a": i, "b": i, "c": i, "d": i} for i in range(1000)])
    return {
        "findAndModify by _id": ms(lambda: coll.find_one_and_update({"_id": "d000005"}, {"$inc": {"v": 1}})),
        "update_one by _id": ms(lambda: coll.update_one({"_id": "d000005"}, {"$inc": {"v": 1}})),
        "find by _id": ms(lambda: coll.find_one({"_id": "d000005"})),
        "range on an index, limit 25": ms(
            lambda: list(coll.find({"kind": "h", "name": {"$gt": ""}}).limit(25)), runs=5
        ),
        "count_documents(limit=26)": ms(lambda: coll.count_documents({"kind": "h"}, limit=26), runs=5),
        "estimated_document_count": ms(lambda: coll.estimated_document_count(), runs=5),
        "explain {_id, kind} says COLLSCAN": float("COLLSCAN" in str(plan["queryPlanner"]["winningPlan"])),
        "30 updates, 1 index": ms(
            lambda: narrow.bulk_write(
                [UpdateOne({"_id": i}, {"$inc": {"a": 1, "b": 1, "c": 1, "d": 1}}) for i in range(30)]
            ),
            runs=5,
        ),
        "30 updates, 5 indexes": ms(
            lambda: many.bulk_write(
                [UpdateOne({"_id": i}, {"$inc": {"a": 1, "b": 1, "c": 1, "d": 1}}) for i in range(30)]
            ),
            runs=5,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000,20000", help="documents in the collection (default %(default)s)"
    )
    sizes = [int(x) for x in parser.parse_args().sizes.split(",")]
    data_dir = tempfile.mkdtemp(prefix="secantus-repro-")
    process, uri = start(data_dir)
    try:
        client: MongoClient = MongoClient(uri)
        db = client["repro"]
        results = {n: measure(db, n) for n in sizes}
        client.close()
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)
    names = list(results[sizes[0]])
    print(f"{'operation (median ms)':36}" + "".join(f"{n:>12,}" for n in sizes))
    for name in names:
        print(f"{name:36}" + "".join(f"{results[n][name]:>12}" for n in sizes))


if __name__ == "__main__":
    main()
