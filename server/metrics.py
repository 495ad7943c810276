"""Prometheus metrics (prometheus_client's default registry).

Labels stay low-cardinality: never a space or client id. Mutator names come from
clients, so only names of registered mutators become label values.
The rest of the server calls the small functions below; /metrics serves the registry.
"""

from __future__ import annotations

import weakref
from collections.abc import Container, Iterable
from typing import TYPE_CHECKING, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from server.embedded import EmbeddedMongo

disable_created_metrics()  # no *_created series: half the output, rarely used

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("replicache_requests_total", "push and pull requests answered", ["endpoint", "outcome"])
LATENCY = Histogram(
    "replicache_request_seconds",
    "push and pull latency, from request start to the end of the response",
    ["endpoint", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
MUTATIONS = Counter(
    "replicache_mutations_total",
    "mutations by outcome: applied, failed (the mutator raised) or skipped (already applied or past a gap)",
    ["mutator", "outcome"],
)
TX_RETRIES = Counter("replicache_transaction_retries_total", "database transactions run again")
TX_CONFLICTS = Counter(
    "replicache_transaction_conflicts_total", "write conflicts and duplicate keys between transactions"
)
BATCH_SIZE = Histogram(
    "replicache_push_batch_size",
    "pushes applied together in one group-commit transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 200),
)
POKES = Counter("replicache_pokes_total", "pokes delivered to SSE listeners (one per listener woken)")
REFUSED = Counter("replicache_refused_total", "connections or requests refused by a cap", ["reason"])
PUBLIC_DEMO = Counter(
    "replicache_public_demo_total", "spaces and tokens handed to anonymous visitors (--public-demo)", ["what"]
)
DB_ERRORS = Counter("replicache_database_errors_total", "requests failed by a database error", ["type"])


class Listeners(Protocol):
    """What the SSE gauges read: a poke hub (server/pokes.py), known here by shape only."""

    listeners: int

    def space_count(self) -> int: ...


# Listener counts are read from the live hubs at scrape time: nothing to keep in step.
_hubs: weakref.WeakSet[Listeners] = weakref.WeakSet()
SSE_LISTENERS = Gauge("replicache_sse_listeners", "open Server-Sent Events poke streams")
SSE_LISTENERS.set_function(lambda: sum(hub.listeners for hub in list(_hubs)))
SSE_SPACES = Gauge("replicache_sse_spaces", "spaces with at least one open poke stream")
SSE_SPACES.set_function(lambda: sum(hub.space_count() for hub in list(_hubs)))


def watch_listeners(hub: Listeners) -> None:
    """Count hub's streams in the SSE gauges for as long as it lives."""
    _hubs.add(hub)


# The embedded database, when there is one: its RSS is read from /proc at scrape time
# (in a worker too: the pid is shared, and follows restarts). Absent on a real MongoDB.
_embedded: list[EmbeddedMongo] = []


class _EmbeddedCollector(Collector):
    def collect(self) -> Iterable[GaugeMetricFamily]:
        memory = embedded_memory()
        if memory is None:
            return
        if memory["rss_bytes"] is not None:
            yield GaugeMetricFamily(
                "replicache_embedded_db_rss_bytes",
                "resident memory of the embedded database process (it grows with every transaction"
                " until EMBEDDED_MAX_RSS_MB restarts it)",
                value=memory["rss_bytes"],
            )
        yield GaugeMetricFamily(
            "replicache_embedded_db_restarts",
            "supervised restarts of the embedded database since the server started",
            value=memory["restarts"],
        )


def watch_embedded(db: EmbeddedMongo) -> None:
    _embedded[:] = [db]


def embedded_memory() -> dict[str, int | None] | None:
    """{"rss_bytes", "restarts"} of the embedded database; None when the server has none."""
    if not _embedded:
        return None
    db = _embedded[0]
    return {"rss_bytes": db.rss_bytes(), "restarts": db.restarts}


REGISTRY.register(_EmbeddedCollector())


def outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return "client_error" if status < 500 else "server_error"


def request_done(endpoint: str, status: int, seconds: float) -> None:
    kind = outcome(status)
    REQUESTS.labels(endpoint, kind).inc()
    LATENCY.labels(endpoint, kind).observe(seconds)


def batch_committed(pushes: int, outcomes: Iterable[tuple[str, str]], registered: Container[str]) -> None:
    """One group-commit transaction ended: its size and its mutations' (name, outcome).
    Names not registered (a client's own mutators, typos) count as "unknown"."""
    BATCH_SIZE.observe(pushes)
    for name, result in outcomes:
        MUTATIONS.labels(name if name in registered else "unknown", result).inc()


def transaction_retry() -> None:
    TX_RETRIES.inc()


def transaction_conflict() -> None:
    TX_CONFLICTS.inc()


def pokes_sent(listeners: int) -> None:
    if listeners:
        POKES.inc(listeners)


def connection_refused(reason: str) -> None:
    """For caps: call with a fixed reason such as "sse_per_space" or "body_too_large"."""
    REFUSED.labels(reason).inc()


def request_refused(error: str) -> None:
    """A refusal answered with a JSON error: its code ("BodyTooLarge", a fixed string of
    ours, never the client's) becomes the reason ("body_too_large")."""
    REFUSED.labels(_snake(error)).inc()


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def database_error(error: BaseException) -> None:
    DB_ERRORS.labels(type(error).__name__).inc()


def public_demo(what: str) -> None:
    """--public-demo handed an anonymous visitor a "space" or a "token"."""
    PUBLIC_DEMO.labels(what).inc()
