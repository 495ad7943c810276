"""The embedded database: a secantusdb server run as a child process.

secantusdb is GPL: it is only ever run through its CLI, never imported.
Data dir layout: DIR/db (WiredTiger home), DIR/secantusd.log, DIR/secantusd.pid.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

EMPTY_CONFIG = Path(__file__).with_name("secantusd.toml")


def _executable() -> str:
    beside = Path(sys.executable).with_name("secantusd-py")
    found = str(beside) if beside.exists() else shutil.which("secantusd-py")
    if not found:
        raise RuntimeError(
            "secantusd-py not found: install the 'embedded' extra (pip install -e '.[embedded]')"
            " or set MONGODB_URI"
        )
    return found


def _die_with_parent() -> None:
    """preexec_fn: kill the child when its parent dies, even by SIGKILL.

    SIGKILL, not SIGTERM: secantus may never act on a SIGTERM (see _terminate), and an
    orphan would hold the data dir. Acknowledged writes are journaled, so none is lost."""
    parent = os.getppid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedMongo:
    """Start with start(), which returns the URI; stop() ends it cleanly; restart() does
    both on the same port, so clients reconnect to the same URI."""

    def __init__(
        self,
        data_dir: str | None,
        host: str = "127.0.0.1",
        *,
        cache_size: str = "",
        oplog_max_entries: int = 0,
        oplog_retention_seconds: float = 0.0,
    ) -> None:
        """data_dir None: an in-memory database (tests). Empty/zero bounds: secantus's own
        defaults (a 1G cache, 100,000 oplog entries, one hour)."""
        self.data_dir = None if data_dir is None else Path(data_dir).resolve()
        self.host = host
        self.bounds = {
            "--cache-size": cache_size,
            "--oplog-max-entries": oplog_max_entries,
            "--oplog-retention-seconds": oplog_retention_seconds,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.uri = ""
        # The child's pid and the restart count, in memory shared with forked workers
        # (--processes N): the parent restarts the child, a worker's /metrics reads them.
        self._shared = mmap.mmap(-1, 8)

    def start(self, timeout: float = 60.0, port: int | None = None) -> str:
        """port: reuse a known one (a restart that clients reconnect to); default a free one."""
        self.port = port = port or free_port(self.host)
        if self.data_dir is None:
            storage, log_file = ":memory:", subprocess.DEVNULL
        else:
            (self.data_dir / "db").mkdir(parents=True, exist_ok=True)
            self._stop_stale()
            storage = str(self.data_dir / "db")
            log_file = open(self.data_dir / "secantusd.log", "ab")  # noqa: SIM115
        args = [
            _executable(),
            "--config",
            str(EMPTY_CONFIG),
            "--host",
            self.host,
            "--port",
            str(port),
            "--storage-path",
            storage,
            "--log-level",
            "WARNING",
            # secantus ignores j:true on commitTransaction, and without a log flush a commit
            # acknowledged just before a SIGKILL is lost (tests/test_faults.py saw it).
            # Measured cost: about 0.2 ms per commit.
            "--sync-on-commit",
            *(str(x) for flag, value in self.bounds.items() if value for x in (flag, value)),
        ]
        self.process = subprocess.Popen(
            args,
            stdout=log_file,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
        )
        self._share(pid=self.process.pid)
        if self.data_dir is not None:
            log_file.close()
            (self.data_dir / "secantusd.pid").write_text(str(self.process.pid))
        self._wait_ready(port, timeout)
        # retryWrites=false: secantus slows down ~10x under retryable writes.
        self.uri = f"mongodb://{self.host}:{port}/?retryWrites=false&directConnection=true"
        return self.uri

    def _wait_ready(self, port: int, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                where = self.data_dir / "secantusd.log" if self.data_dir else "stderr"
                raise RuntimeError(f"embedded database exited with {self.process.returncode}; see {where}")
            try:
                socket.create_connection((self.host, port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"embedded database did not start within {timeout:.0f}s")

    def _stop_stale(self) -> None:
        """A previous server killed hard may have left its database holding the dir."""
        assert self.data_dir is not None
        pid_file = self.data_dir / "secantusd.pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return
        if not _is_secantus(pid):
            return
        log.warning("stopping a stale embedded database (pid %d) holding %s", pid, self.data_dir)
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        _terminate(pid, args[args.index("--host") + 1], int(args[args.index("--port") + 1]))

    def stop(self) -> None:
        if self.process is None:
            return
        _terminate(self.process.pid, self.host, self.port)
        self.process.wait()
        self.process = None
        self._share(pid=0)
        if self.data_dir is not None:
            (self.data_dir / "secantusd.pid").unlink(missing_ok=True)

    def restart(self) -> None:
        """Stop cleanly (every acknowledged commit is journaled) and start again on the
        same data and port. Meanwhile the driver waits for the server to come back
        (server selection) and retries transactions that the stop cut off."""
        if self.data_dir is None:
            raise RuntimeError("an in-memory database cannot be restarted: its data would be lost")
        if self.process is None:
            return
        began = time.monotonic()
        self.stop()
        stopped = time.monotonic()
        self.start(port=self.port)
        self._share(restarts=self.restarts + 1)
        log.warning(
            "embedded database restarted (pid %d): stopped in %.1fs, started in %.1fs",
            self.pid,
            stopped - began,
            time.monotonic() - stopped,
        )

    def _share(self, pid: int | None = None, restarts: int | None = None) -> None:
        old_pid, old_restarts = struct.unpack_from("ii", self._shared)
        new = (old_pid if pid is None else pid, old_restarts if restarts is None else restarts)
        struct.pack_into("ii", self._shared, 0, *new)

    @property
    def pid(self) -> int | None:
        """The running child's pid, also in a forked worker and after a restart."""
        return struct.unpack_from("i", self._shared)[0] or None

    @property
    def restarts(self) -> int:
        return struct.unpack_from("ii", self._shared)[1]

    def rss_bytes(self) -> int | None:
        """The child's resident memory, from /proc; None when it is not running."""
        return rss_bytes(self.pid)


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def _is_secantus(pid: int) -> bool:
    try:  # a zombie or another program reusing the pid has no such command line
        return b"secantusd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _terminate(pid: int, host: str, port: int, timeout: float = 30.0) -> None:
    """SIGTERM, sent again while the database still accepts connections: secantus acts on
    a signal only when the kernel delivers it to its main thread (one that lands on another
    thread is never handled). Its handler closes the listening socket first."""
    deadline = time.monotonic() + timeout
    try:
        while _is_secantus(pid) and time.monotonic() < deadline:
            if _accepts(host, port):
                os.kill(pid, signal.SIGTERM)
            time.sleep(0.2)  # another process: no event tells us it has exited
        if _is_secantus(pid):
            log.warning("embedded database (pid %d) ignored SIGTERM for %.0fs; killing it", pid, timeout)
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
