"""The load worker processes of scripts/bench.py, seen from the parent: start one, send it
a command (one JSON line; scripts/_bench_load.py lists them), read its one-line answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().parent / "_bench_load.py"


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
    """total as `parts` shares that differ by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
