"""The open-files limit, for tests and load generators that hold many connections."""

from __future__ import annotations

import resource
import sys

INFINITY = resource.RLIM_INFINITY


def raise_open_files(count: int | None = None) -> int:
    """Raise this process's soft RLIMIT_NOFILE to `count` (None: to the hard limit), never
    past the hard limit and never down. Returns the soft limit now in force (sys.maxsize
    for unlimited); below `count` when the hard limit does not allow it. Processes started
    afterwards (the server, load workers) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != INFINITY:
        want = hard if count is None or (hard != INFINITY and count > hard) else count
        if want != INFINITY and want > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return sys.maxsize if soft == INFINITY else soft
