"""Keep the embedded database's memory bounded: restart it once its RSS passes a bound.

secantusdb 0.7.0b3 keeps every WiredTiger session and cursor wrapper it ever closed: each
multi-document transaction opens its own session, so it grows by about 2.5 KB per
transaction (two updates), about 5.5 KB per push under the server's load (a push and a
pull are a transaction each), without end. Nothing a client does frees it (ending,
reusing or rotating sessions and clients: measured, docs/embedded-memory.md); exiting
does. So a thread in the process that owns the child watches its RSS and, past
EMBEDDED_MAX_RSS_MB, restarts it on the same data dir and port (EmbeddedMongo.restart).
It also starts the child again if it died (e.g. killed for memory).

Cost: a stop and a start, about 2-3 s on the project machine, during which requests
wait for the database (server selection, 5 s) and transactions cut off are retried;
one slower than that answers 503, which clients retry. Nothing acknowledged is lost:
commits are journaled before they are answered (--sync-on-commit).
"""

from __future__ import annotations

import logging
import threading

from server.embedded import EmbeddedMongo

log = logging.getLogger(__name__)

MB = 1024 * 1024


def decide(rss: int | None, max_rss: int, fresh_rss: int | None) -> str:
    """What to do: "ok", "restart", or "bound_too_low" (past the bound, but a restart
    cannot bring it under: the child took that much just after it started)."""
    if not max_rss or rss is None or rss <= max_rss:
        return "ok"
    if fresh_rss is not None and fresh_rss >= max_rss:
        return "bound_too_low"
    return "restart"


class MemoryGuard:
    def __init__(self, db: EmbeddedMongo, max_rss_mb: float, check_seconds: float = 10.0) -> None:
        """max_rss_mb 0: never restart for memory (a dead child is still started again)."""
        self.db = db
        self.max_rss = int(max_rss_mb * MB)
        self.check_seconds = check_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._fresh_rss: int | None = None  # what the child took just after its last start
        self._warned = False

    def start(self) -> MemoryGuard:
        if self.db.data_dir is None:  # in memory: a restart would lose the data
            return self
        self._fresh_rss = self.db.rss_bytes()
        self._thread = threading.Thread(target=self._run, name="embedded-db-guard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Before stopping the database: waits for a restart under way to finish."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.check_seconds):
            try:
                self.check()
            except Exception:  # the guard must not die; the next check tries again
                log.exception("embedded database guard: check failed")

    def check(self) -> None:
        """One look at the child: start it if it died, restart it if it is too big."""
        process = self.db.process
        if process is None or process.poll() is not None:
            code = None if process is None else process.returncode
            log.error("embedded database is not running (exit code %s); starting it again", code)
            self.db.stop()  # forgets the dead process and its pid file
            self.db.start(port=self.db.port)
            self._fresh_rss = self.db.rss_bytes()
            return
        rss = self.db.rss_bytes()
        verdict = decide(rss, self.max_rss, self._fresh_rss)
        if verdict == "ok":
            return
        if verdict == "bound_too_low":
            if not self._warned:
                log.warning(
                    "EMBEDDED_MAX_RSS_MB %d is below what the embedded database takes when it starts"
                    " (%d MB): not restarting it; raise the bound",
                    self.max_rss // MB,
                    self._fresh_rss // MB,
                )
                self._warned = True
            return
        log.warning(
            "embedded database RSS %d MB > EMBEDDED_MAX_RSS_MB %d: restarting it",
            rss // MB,
            self.max_rss // MB,
        )
        self.db.restart()
        self._fresh_rss = self.db.rss_bytes()
