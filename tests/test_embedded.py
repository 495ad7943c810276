"""The embedded database never outlives its server, nor locks the data dir after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from server.embedded import EmbeddedMongo, _is_secantus

CHILD = """
import sys, time
from server.embedded import EmbeddedMongo
db = EmbeddedMongo(sys.argv[1])
db.start()
print(db.process.pid, flush=True)
time.sleep(600)
"""


def wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_secantus(pid):
            return True
        time.sleep(0.05)
    return False


def test_child_dies_with_a_killed_parent(tmp_path: Path):
    parent = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    db_pid = int(parent.stdout.readline())
    assert _is_secantus(db_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_gone(db_pid), "the embedded database outlived its SIGKILLed parent"
    db = EmbeddedMongo(str(tmp_path))  # and the data dir is usable again at once
    db.start()
    db.stop()


def test_stale_database_is_stopped_at_start(tmp_path: Path):
    first = EmbeddedMongo(str(tmp_path))
    first.start()
    assert first.process is not None
    stale_pid = first.process.pid
    first.process = None  # forget it, as a crashed server would
    second = EmbeddedMongo(str(tmp_path))
    try:
        second.start()
        assert not _is_secantus(stale_pid)
    finally:
        second.stop()
        if _is_secantus(stale_pid):
            os.kill(stale_pid, signal.SIGKILL)
