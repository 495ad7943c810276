"""The real replicache@15.3.0 client under Node through the recovery paths (issue 11):
a long offline queue (early exit), and a server restored from a copy of its data dir."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.embedded import free_port
from server.testing import ROOT, LiveServer

SCRIPT = Path(__file__).with_name("recovery.mjs")
BAD = ("is < than last snapshot", "did not change, but")


def run(url: str, scenario: str, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    node = subprocess.Popen(
        ["node", str(SCRIPT), url, scenario],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert node.stdin is not None and node.stdout is not None
    report = None
    try:
        for line in node.stdout:
            if line.startswith("step ") and on_step is not None:
                on_step(line.split()[1])
                node.stdin.write("go\n")
                node.stdin.flush()
            elif line.startswith("report "):
                report = json.loads(line[len("report ") :])
        node.wait(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
    assert report is not None, "the Node script printed no report"
    assert report["ok"], report.get("error")
    assert report["badLines"] == []
    return report


def test_a_long_offline_queue_syncs_in_early_exits(live_server):
    report = run(live_server.url, "longQueue")
    result = report["result"]
    assert result["whileOffline"] == 1200
    assert result["counts"] == [1200] and result["pending"] == [0] and result["server"] == 1200
    assert max(result["pushes"]) == 1200  # every push carried the whole queue...
    assert report["events"] == []  # ...and none was refused


def test_a_server_restored_from_a_copy_converges_its_clients(tmp_path):
    data, copy, port = tmp_path / "data", tmp_path / "copy", free_port()
    servers = [LiveServer(data_dir=data, port=port).start()]

    def on_step(name: str) -> None:
        assert servers[-1].stop() == 0
        if name == "copy":
            shutil.copytree(data, copy)
        else:
            shutil.rmtree(data)
            shutil.copytree(copy, data)
        servers.append(LiveServer(data_dir=data, port=port).start())

    try:
        report = run(servers[0].url, "restore", on_step)
    finally:
        servers[-1].stop()
    result = report["result"]
    assert result["first"]["server"] == 3 and result["second"]["server"] == 43
    # Restored: the clients had cookies from a future the server lost. They are told to
    # start over and converge on what the server has, nothing pending, no rejected answer.
    assert result["restored"] == {"counts": [3, 3], "pending": [0, 0], "server": 3}
    assert result["after"] == {"counts": [103, 103], "pending": [0, 0], "server": 103}
    assert {e["event"] for e in report["events"]} == {"onClientStateNotFound"}
    assert result["starts"] == [2, 2]  # each started over exactly once
