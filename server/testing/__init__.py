"""What the tests and the scripts share: one of each.

- `process.LiveServer`: `python -m server` as a child process on a free loopback port;
- `sse.SSE` and `sse.listen`: a raw Server-Sent Events client for the poke stream;
- `bodies`: push and pull bodies shaped like the real Replicache client's;
- `limits.raise_open_files`: lift this process's open-files limit for many connections;
- `stats.percentile`: the one percentile definition behind every published figure.

Installed with the server (`pip install -e .`), so `tests/` and `scripts/` import it as
`server.testing` without touching sys.path. The server itself never imports it.
"""

from server.testing.bodies import mutation, pull_body, push_body
from server.testing.limits import raise_open_files
from server.testing.process import ROOT, LiveServer
from server.testing.sse import SSE, address, listen, poke_request, stuck_socket
from server.testing.stats import percentile

__all__ = [
    "ROOT",
    "SSE",
    "LiveServer",
    "address",
    "listen",
    "mutation",
    "percentile",
    "poke_request",
    "pull_body",
    "push_body",
    "raise_open_files",
    "stuck_socket",
]
