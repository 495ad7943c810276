"""LiveServer: `python -m server` as a real child process on a free loopback port.

For what needs a whole process: restarts, signals, kill -9, several processes, the Node
client, the browser, and the benchmark's server under test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from server.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]  # the checkout: server/testing/ is two below it


class LiveServer:
    def __init__(
        self,
        *args: str,
        data_dir: str | Path | None = None,
        mongodb_uri: str = "",
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """args: extra command-line flags. Without mongodb_uri it starts its own embedded
        database in data_dir (required then: never the repo's ./data)."""
        if not mongodb_uri and data_dir is None:
            raise ValueError("LiveServer needs data_dir (e.g. tmp_path) or mongodb_uri")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(self.port), *args]
        if data_dir is not None:
            self.args += ["--data-dir", str(data_dir)]
        self.env = {**os.environ, "MONGODB_URI": mongodb_uri, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, timeout: float = 60.0) -> LiveServer:
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()

        def read() -> None:  # keeps draining so the child never blocks on a full pipe
            assert self.process and self.process.stdout
            for line in self.process.stdout:
                self.output.append(line)
                if re.match(r"listening on http://", line):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.process.poll() is not None:
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        return self

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: a graceful shutdown. Returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """Stop it if it still runs: gracefully, and killed if that takes over a minute."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
