"""Memory of a live server process while waves of poke listeners come and go.

Measured as the `python -m server` process's RSS (/proc/<pid>/status), never counters,
and never against a clock. What is asserted is docs/performance.md's "nothing leaks": a second
wave of listeners reuses the memory the first one left, so the peak does not grow by
another wave. How much RSS falls back after a wave (the hub's reclaim step) is recorded in
test-artifacts/memory.txt, not asserted: measured over 4 runs of 3,000 listeners it gave
back 21-43% of what they took, and 9-28% with the reclaim step turned off, so one run
cannot tell the two apart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

from server.testing import ROOT, LiveServer, listen
from tests.helpers import Api, need_open_files
from tests.test_ops import scrape

LISTENERS = 3000
WAVES = 2


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError("no VmRSS")


@pytest.fixture
def many_files() -> None:
    """Both ends of every listener live in this process."""
    need_open_files(2 * LISTENERS + 256)


async def wait(done, what: str, timeout: float = 60.0) -> None:
    """For states with no event to wait on (another process's gauge, its log): poll."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await done():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=300)
async def test_a_second_wave_of_listeners_reuses_the_memory_of_the_first(tmp_path, many_files):
    # Thousands of listeners from one address: lift the per-address caps (docs/security.md).
    one_address = ("--poke-max-per-address", "0", "--max-connections-per-address", "0")
    with LiveServer("--log-level", "info", *one_address, data_dir=tmp_path) as server:
        pid = server.process.pid
        http = AsyncHTTPClient()
        api = Api(http, server.url)
        space = await api.create_space()

        async def listeners_gone() -> bool:
            samples = await scrape(http, server.url)
            return samples[("replicache_sse_listeners", ())] == 0

        def reclaims() -> int:
            return sum("gave memory back" in line for line in server.output)

        # Warm up: the first listeners allocate what every later one reuses.
        for sse in await asyncio.gather(*(listen(server.url, space) for _ in range(50))):
            sse.close()
        await wait(listeners_gone, "the warm-up listeners were not removed")
        base = rss_kb(pid)
        figures = []
        for wave in range(1, WAVES + 1):
            listeners = []
            for _ in range(LISTENERS // 500):
                listeners += await asyncio.gather(*(listen(server.url, space) for _ in range(500)))
            peak = rss_kb(pid)
            for sse in listeners:
                sse.close()
            await wait(listeners_gone, f"wave {wave}: the listeners were not removed")

            async def reclaimed(wave: int = wave) -> bool:
                return reclaims() >= wave

            await wait(reclaimed, f"wave {wave}: the hub did not run its reclaim step")
            figures.append((peak, rss_kb(pid)))
        report = f"RSS KB, {LISTENERS} listeners a wave: baseline {base}; " + "; ".join(
            f"wave {n}: open {peak}, after close {after} (gave back {(peak - after) / (peak - base):.0%})"
            for n, (peak, after) in enumerate(figures, 1)
        )
        print(report)
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        (ROOT / "test-artifacts" / "memory.txt").write_text(report + "\n")
        (first_peak, _), (second_peak, _) = figures[0], figures[-1]
        grown = first_peak - base
        assert grown > 0, report
        # Measured: the second peak is within 0.5 MB of the first (of ~44 MB grown); keeping
        # each closed connection's Listener alive (a deliberate leak) added 5 MB.
        assert second_peak - first_peak <= grown / 20, report
