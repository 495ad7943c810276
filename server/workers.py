"""--processes N: worker processes sharing the parent's listening sockets.

The parent binds the sockets, starts the embedded database (if any), then forks with
tornado.process.fork_processes, which restarts a worker that crashes. The parent never
serves. To stop the workers it closes the write end of a pipe whose read end each worker
watches: end of file means "stop gracefully". The same happens when the parent dies,
even by SIGKILL, so no worker outlives it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.netutil
import tornado.process

from server.config import Settings
from server.watcher import change_streams_supported

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What a serving process is given by prepare()."""

    processes: int
    watch: bool  # the database has change streams: run a watcher
    sockets: list[socket.socket]
    parent_fd: int | None = None  # a worker's end of the stop pipe

    def describe(self) -> str:
        return f", {self.processes} processes" if self.processes > 1 else ""


def prepare(settings: Settings, uri: str, embedded: bool = False) -> Run:
    """Check the database, bind the sockets, fork the workers (if more than one).
    Returns in each process that serves; the parent of workers returns only by SystemExit.

    `embedded`: the database was started for this server alone. With one process every
    commit is then its own, and a change stream would only cost each push its event."""
    processes = count(settings.processes)
    alone = embedded and processes == 1  # then every commit is this process's own
    watch = not alone and asyncio.run(change_streams_supported(uri, settings.db_name))
    if not watch and not alone:
        if processes > 1:
            raise SystemExit(
                f"--processes {processes} needs a database with change streams (a MongoDB replica set):"
                " without them a process cannot poke for another's commits"
            )
        log.warning("no change streams: pokes reach only this process's listeners; run one process only")
    sockets = tornado.netutil.bind_sockets(settings.port, settings.host, backlog=settings.listen_backlog)
    parent_fd = fork(processes) if processes > 1 else None
    return Run(processes, watch, sockets, parent_fd)


def count(processes: int) -> int:
    """The number of processes to run: 0 means one per CPU."""
    return processes if processes > 0 else tornado.process.cpu_count()


def is_worker() -> bool:
    return tornado.process.task_id() is not None


def fork(processes: int) -> int:
    """In the parent: wait for the workers, then exit (SystemExit 0; `finally` blocks run).
    In a worker: return the fd that reads end of file when the worker should stop."""
    read_fd, write_fd = os.pipe()
    open_fds = {write_fd}  # a fork copies this: a restarted worker knows if it is closed

    def stop_workers(signum: int, frame: Any) -> None:
        while open_fds:
            os.close(open_fds.pop())

    signal.signal(signal.SIGTERM, stop_workers)
    signal.signal(signal.SIGINT, stop_workers)
    tornado.process.fork_processes(processes)
    # A worker: keep no write end, or end of file never comes.
    for fd in open_fds:
        os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return read_fd


def on_parent_exit(read_fd: int, callback: Callable[[], None]) -> None:
    """Call callback (once) when the parent asks the workers to stop, or dies."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        loop.remove_reader(read_fd)
        callback()

    loop.add_reader(read_fd, readable)
