"""The embedded database: a secantusdb server run as a child process.

secantusdb is GPL: it is only ever run through its CLI, never imported.
Data dir layout: DIR/db (WiredTiger home), DIR/secantusd.log, DIR/secantusd.pid,
DIR/secantusd.auth (the current credentials, server/embedded_credentials.py).

Closed to other local users (issue 18): it listens on 127.0.0.1, where anyone on the
host can connect, so it runs with --auth (SCRAM-SHA-256) and a random password made at
every start; the data dir is 0700 and its files 0600; the child gets a scrubbed
environment (no AUTH_SECRET, ADMIN_TOKEN...). secantus can only add users with auth off,
so a data dir without usable credentials is provisioned once with auth off for the time
it takes to create the user, then restarted with --auth (docs/security.md). Later
starts sign in with the saved password and change it. An in-memory database (tests)
has no auth: it cannot be restarted to turn auth on.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from pymongo.errors import OperationFailure

from server import embedded_credentials as credentials

log = logging.getLogger(__name__)

EMPTY_CONFIG = Path(__file__).with_name("secantusd.toml")
# What the child keeps of our environment: never a secret setting (AUTH_SECRET, ADMIN_TOKEN,
# MONGODB_URI...), which /proc/<pid>/environ would show and a crash dump would keep.
CHILD_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH")
CHILD_ENV_PREFIXES = ("LC_", "SECANTUS_")


def _executable() -> str:
    beside = Path(sys.executable).with_name("secantusd-py")
    found = str(beside) if beside.exists() else shutil.which("secantusd-py")
    if not found:
        raise RuntimeError(
            "secantusd-py not found: install the 'embedded' extra (pip install -e '.[embedded]')"
            " or set MONGODB_URI"
        )
    return found


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ) if env is None else env
    return {k: v for k, v in env.items() if k in CHILD_ENV or k.startswith(CHILD_ENV_PREFIXES)}


def _die_with_parent() -> None:
    """preexec_fn: kill the child when its parent dies, even by SIGKILL; its files 0600.

    SIGKILL, not SIGTERM: secantus may never act on a SIGTERM (see _terminate), and an
    orphan would hold the data dir. Acknowledged writes are journaled, so none is lost."""
    os.umask(0o077)
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
        self.password = ""  # made by the first start(); kept by later ones (the same URI)
        # The child's pid and the restart count, in memory shared with forked workers
        # (--processes N): the parent restarts the child, a worker's /metrics reads them.
        self._shared = mmap.mmap(-1, 8)

    def start(self, timeout: float = 60.0, port: int | None = None) -> str:
        """port: reuse a known one (a restart that clients reconnect to); default a free one.
        The URI holds the password: never log it (docs/security.md)."""
        self.port = port = port or free_port(self.host)
        if self.data_dir is None:
            self._launch(port, timeout, auth=False)
            self.uri = self._uri()
            return self.uri
        self._lock_down()
        self._stop_stale()
        if self.password:  # a restart: same credentials, so connected clients carry on
            self._launch(port, timeout, auth=True)
        else:
            self.password = self._sign_in(port, timeout)
        self.uri = self._uri(self.password)
        return self.uri

    def _uri(self, password: str | None = None) -> str:
        # retryWrites=false: secantus slows down ~10x under retryable writes.
        options = "retryWrites=false&directConnection=true"
        if password is None:
            return f"mongodb://{self.host}:{self.port}/?{options}"
        login = f"{credentials.USER}:{quote(password, safe='')}@"
        return f"mongodb://{login}{self.host}:{self.port}/?{options}&authSource=admin&authMechanism=SCRAM-SHA-256"

    def _sign_in(self, port: int, timeout: float) -> str:
        """Start with --auth and a fresh password; returns it."""
        assert self.data_dir is not None
        fresh = secrets.token_urlsafe(32)
        saved = credentials.saved_password(self.data_dir)
        if saved:
            self._launch(port, timeout, auth=True)
            try:
                credentials.run(credentials.change_password(self._uri(saved), fresh))
                credentials.save_password(self.data_dir, fresh)
                return fresh
            except OperationFailure:  # the saved password no longer opens it
                log.warning("embedded database: saved credentials refused; provisioning new ones")
                self.stop()
        # No usable credentials: the only way in is with auth off, for as long as it takes.
        self._launch(port, timeout, auth=False)
        credentials.run(credentials.create_user(self._uri(), fresh))
        credentials.save_password(self.data_dir, fresh)
        self.stop()
        self._launch(port, timeout, auth=True)
        # Anyone who got in while auth was off could have made a user of their own.
        credentials.run(credentials.drop_other_users(self._uri(fresh)))
        return fresh

    def _lock_down(self) -> None:
        """The data dir 0700 and everything in it unreadable to others, including what an
        older version left 0755/0644."""
        assert self.data_dir is not None
        (self.data_dir / "db").mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        for root, dirs, files in os.walk(self.data_dir):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
            for name in files:
                path = os.path.join(root, name)
                os.chmod(path, os.stat(path).st_mode & 0o700)

    def _launch(self, port: int, timeout: float, auth: bool) -> None:
        if self.data_dir is None:
            storage, log_file = ":memory:", subprocess.DEVNULL
        else:
            storage = str(self.data_dir / "db")
            log_fd = os.open(self.data_dir / "secantusd.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            log_file = os.fdopen(log_fd, "ab")
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
            *(["--auth"] if auth else []),
            *(str(x) for flag, value in self.bounds.items() if value for x in (flag, value)),
        ]
        self.process = subprocess.Popen(
            args,
            stdout=log_file,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
        )
        self._share(pid=self.process.pid)
        if self.data_dir is not None:
            log_file.close()
            pid_fd = os.open(self.data_dir / "secantusd.pid", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(pid_fd, "w") as f:
                f.write(str(self.process.pid))
        self._wait_ready(port, timeout)

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
