"""What scripts/bench.py reads about the server under test from /proc: memory, open file
descriptors, CPU time, and its embedded database's process."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path


def rss_kb(pid: int | None) -> int | None:
    """Resident memory in KB; None without a pid or once the process is gone."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
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


def embedded_db_pid(server_pid: int | None) -> int | None:
    """The secantusd child of the server (or of the parent of its workers), if any."""
    if server_pid is None:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == server_pid and b"secantusd" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None
