"""The server process around the poke streams: its listen backlog and its graceful
shutdown (SIGTERM ends SSE streams cleanly, exits 0, stops the embedded database)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import urllib.request
from pathlib import Path

from tests.live import LiveServer
from tests.sse import SSE


def create_space(url: str) -> str:
    request = urllib.request.Request(
        url + "/api/replicache/createSpace", b"{}", {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["spaceID"]


def is_secantus(pid: int) -> bool:
    try:
        return b"secantusd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_sigterm_ends_sse_streams_cleanly_and_stops_the_database(tmp_path):
    server = LiveServer(data_dir=tmp_path).start()
    try:
        pid_file = tmp_path / "secantusd.pid"
        db_pid = int(pid_file.read_text())
        assert is_secantus(db_pid)
        space = create_space(server.url)

        async def scenario() -> None:
            streams = [await SSE.open(server.url, space) for _ in range(3)]
            for sse in streams:
                assert await sse.data() == "hello"
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            for sse in streams:
                assert await sse.frame(timeout=30) is None  # the last chunk: a clean end
                assert sse.ended
                assert await sse.reader.read() == b""  # then EOF, not a reset
                sse.close()

        asyncio.run(scenario())
        assert server.process is not None
        assert server.process.wait(60) == 0
    finally:
        server.kill()
    # The server stopped its database itself before exiting (it removes the pid file).
    assert not pid_file.exists()
    assert not is_secantus(db_pid)
    output = "".join(server.output)
    assert "Traceback" not in output and "shutting down" in output


def test_listen_backlog_holds_a_burst_while_the_server_is_busy(tmp_path):
    """Tornado's default backlog of 128 drops the SYNs of a burst the process cannot
    accept at once; the server's is 1024, so 300 connections all complete."""
    with LiveServer(data_dir=tmp_path) as server:
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)  # nothing is accepted meanwhile
        sockets: list[socket.socket] = []
        try:
            for _ in range(300):
                sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
        finally:
            server.process.send_signal(signal.SIGCONT)
            for s in sockets:
                s.close()
        assert len(sockets) == 300
