"""Operations: /metrics, /healthz, /readyz and the structured access log (issue 8)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path

import pytest
import tornado.httpserver
import tornado.testing
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from tornado.httpclient import AsyncHTTPClient

from server import metrics
from server.app import make_app
from server.config import Settings
from server.embedded import EmbeddedMongo
from server.pokes import PokeHub
from server.store import Store
from server.testing import SSE, LiveServer
from tests.helpers import mutation, uid

pytestmark = pytest.mark.gen_test

METRIC_NAMES = [  # the names documented in docs/operations.md "Metrics"
    "replicache_requests_total",
    "replicache_request_seconds",
    "replicache_mutations_total",
    "replicache_transaction_retries_total",
    "replicache_transaction_conflicts_total",
    "replicache_push_batch_size",
    "replicache_sse_listeners",
    "replicache_sse_spaces",
    "replicache_pokes_total",
    "replicache_refused_total",
    "replicache_database_errors_total",
    "replicache_public_demo_total",
]
# Only with the embedded database (tests/test_embedded_memory.py reads them from a live server).
EMBEDDED_METRIC_NAMES = ["replicache_embedded_db_rss_bytes", "replicache_embedded_db_restarts"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http_client, base_url) -> Samples:
    r = await http_client.fetch(base_url + "/metrics")
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_metrics_after_pushes_and_pulls(api, http_client, base_url):
    space = await api.create_space()
    before = await scrape(http_client, base_url)
    c = uid("c-")
    r = await api.push(
        space,
        "g1",
        [mutation(1, c), mutation(2, c, "noSuchMutator"), mutation(3, c, args="not a number")],
    )
    assert r.status == 200
    r = await api.push(space, "g1", [mutation(3, c), mutation(4, c), mutation(6, c)])  # 3 done, 6 past a gap
    assert r.status == 200
    assert (await api.pull(space, "g1")).status == 200
    assert (await api.pull("no-such-space", "g2")).status == 404
    after = await scrape(http_client, base_url)

    assert delta(after, before, "replicache_requests_total", endpoint="push", outcome="ok") == 2
    assert delta(after, before, "replicache_requests_total", endpoint="pull", outcome="ok") == 1
    assert delta(after, before, "replicache_requests_total", endpoint="pull", outcome="client_error") == 1
    assert delta(after, before, "replicache_request_seconds_count", endpoint="push", outcome="ok") == 2
    assert delta(after, before, "replicache_request_seconds_sum", endpoint="push", outcome="ok") > 0
    mutations = "replicache_mutations_total"
    assert delta(after, before, mutations, mutator="increment", outcome="applied") == 2
    assert delta(after, before, mutations, mutator="increment", outcome="failed") == 1
    assert (
        delta(after, before, mutations, mutator="unknown", outcome="failed") == 1
    )  # client names not labels
    assert delta(after, before, mutations, mutator="increment", outcome="skipped") == 2
    assert not any(name == mutations and ("mutator", "noSuchMutator") in labels for name, labels in after)
    assert delta(after, before, "replicache_push_batch_size_count") == 2
    assert delta(after, before, "replicache_push_batch_size_sum") == 2
    # No label ever carries a space or client id.
    for _name, labels in after:
        assert all(space not in value and c not in value for _k, value in labels)


async def test_every_documented_metric_is_exposed(http_client, base_url):
    r = await http_client.fetch(base_url + "/metrics")
    families = {f.name for f in text_string_to_metric_families(r.body.decode())}
    readme = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    for name in METRIC_NAMES:
        assert name.removesuffix("_total") in families, name
        assert f"`{name}`" in readme, name
    documented = set(re.findall(r"`(replicache_[a-z_]+)`", readme))
    assert documented == set(METRIC_NAMES + EMBEDDED_METRIC_NAMES)


async def test_refused_counter_for_caps(http_client, base_url):
    before = await scrape(http_client, base_url)
    metrics.connection_refused("sse_per_space")
    metrics.connection_refused("sse_per_space")
    after = await scrape(http_client, base_url)
    assert delta(after, before, "replicache_refused_total", reason="sse_per_space") == 2


async def test_sse_listener_gauge_and_pokes(api, http_client, base_url):
    space = await api.create_space()
    before = await scrape(http_client, base_url)
    stream = await SSE.open(base_url, space)
    try:
        await stream.wait_for("hello")
        during = await scrape(http_client, base_url)
        assert delta(during, before, "replicache_sse_listeners") == 1
        assert delta(during, before, "replicache_sse_spaces") == 1
        assert (await api.push(space, "g1", [mutation(1, uid("c-"))])).status == 200
        await stream.wait_for("poke")
        after_poke = await scrape(http_client, base_url)
        assert delta(after_poke, before, "replicache_pokes_total") == 1
    finally:
        stream.close()
    # The server sees the close asynchronously: poll until the gauge drops.
    deadline = time.monotonic() + 10
    while True:
        now = await scrape(http_client, base_url)
        if delta(now, before, "replicache_sse_listeners") == 0:
            break
        assert time.monotonic() < deadline, "listener gauge did not drop after the stream closed"
        await asyncio.sleep(0.05)


async def test_concurrent_transactions_count_conflicts(api, http_client, base_url):
    """Pulls binding the same new client group race to insert it: the loser retries."""
    space = await api.create_space()
    before = await scrape(http_client, base_url)
    for _ in range(20):
        group = uid("g-")
        replies = await asyncio.gather(*(api.pull(space, group) for _ in range(6)))
        assert all(r.status == 200 for r in replies), [r.body for r in replies]
        after = await scrape(http_client, base_url)
        if delta(after, before, "replicache_transaction_conflicts_total") > 0:
            break
    assert delta(after, before, "replicache_transaction_conflicts_total") > 0
    assert delta(after, before, "replicache_transaction_retries_total") > 0


async def test_healthz_and_readyz(http_client, base_url):
    r = await http_client.fetch(base_url + "/healthz")
    assert r.code == 200 and json.loads(r.body) == {"status": "ok"}
    r = await http_client.fetch(base_url + "/readyz")
    assert r.code == 200 and json.loads(r.body) == {"status": "ready"}


@pytest.mark.gen_test(timeout=120)
async def test_readyz_follows_the_database(tmp_path):
    """Its own database (not the session one), stopped and started on the same port."""
    db = EmbeddedMongo(str(tmp_path / "data"))
    uri = await asyncio.to_thread(db.start)
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=1000)
    hub = PokeHub()
    store = Store(client, "readyz", on_commit=hub.poke)
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(make_app(Settings(ready_timeout=0.5), store, hub))
    server.add_sockets([sock])
    http = AsyncHTTPClient()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/readyz"
    try:
        r = await http.fetch(url, raise_error=False)
        assert r.code == 200, r.body
        await store.create_space("s")
        await asyncio.to_thread(db.stop)
        before = await scrape(http, base)
        r = await http.fetch(url, raise_error=False)
        assert r.code == 503
        assert r.headers["Content-Type"].startswith("application/json")
        assert json.loads(r.body)["error"] == "DatabaseUnavailable"
        between = await scrape(http, base)
        r = await http.fetch(
            f"{base}/api/replicache/spaceExists",
            method="POST",
            body=json.dumps({"spaceID": "s"}),
            headers={"Content-Type": "application/json"},
            raise_error=False,
        )
        assert r.code == 503 and json.loads(r.body)["error"] == "DatabaseUnavailable"
        after = await scrape(http, base)
        # One error each, of a type the driver may choose: a pooled connection to the stopped
        # database fails at once (AutoReconnect); else the ping runs out of ready_timeout
        # (TimeoutError) and the request out of server selection.
        assert error_types(between, before) in ({"TimeoutError": 1}, {"AutoReconnect": 1})  # the ping
        assert error_types(after, between) in ({"ServerSelectionTimeoutError": 1}, {"AutoReconnect": 1})
        assert (await http.fetch(f"{base}/healthz")).code == 200  # alive all along
        await asyncio.to_thread(db.start, 60.0, db.port)
        # The driver reconnects on its own schedule: poll with a deadline.
        deadline = time.monotonic() + 30
        while (r := await http.fetch(url, raise_error=False)).code != 200:
            assert time.monotonic() < deadline, r.body
            await asyncio.sleep(0.1)
        assert json.loads(r.body) == {"status": "ready"}
    finally:
        server.stop()
        await client.close()
        await asyncio.to_thread(db.stop)


def error_types(after: Samples, before: Samples) -> dict[str, float]:
    """replicache_database_errors_total by type: those that grew, and by how much."""
    grown = {}
    for (name, labels), value in after.items():
        if name == "replicache_database_errors_total" and value != before.get((name, labels), 0.0):
            grown[dict(labels)["type"]] = value - before.get((name, labels), 0.0)
    return grown


async def test_readyz_during_shutdown(lifecycle, http_client, base_url):
    lifecycle.close()  # what a graceful stop does first
    r = await http_client.fetch(base_url + "/readyz", raise_error=False)
    assert r.code == 503 and json.loads(r.body)["error"] == "ShuttingDown"


def _access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "server.access"]


@pytest.mark.parametrize("settings", [{"log_format": "json"}], indirect=True)
async def test_json_access_log(settings, api, caplog):
    caplog.set_level(logging.INFO, logger="server.access")
    space = await api.create_space()
    marker = "body-marker-" + uid()
    headers = {"X-Replicache-RequestID": "req-42"}
    body = {
        "profileID": "p1",
        "clientGroupID": "group-7",
        "mutations": [mutation(1, uid("c-"), args=marker)],
        "pushVersion": 1,
        "schemaVersion": "",
    }
    assert (await api.post(f"/api/replicache/push?spaceID={space}", body, headers)).status == 200
    assert (await api.pull("missing-space", "group-8")).status == 404
    lines = [json.loads(line) for line in _access_lines(caplog)]
    push = next(x for x in lines if x["path"] == "/api/replicache/push")
    assert push["method"] == "POST" and push["status"] == 200 and push["ms"] >= 0
    assert push["space"] == space and push["clientGroup"] == "group-7" and push["requestID"] == "req-42"
    assert "error" not in push
    pull = next(x for x in lines if x["path"] == "/api/replicache/pull")
    assert pull["status"] == 404 and pull["error"] == "SpaceNotFound" and pull["clientGroup"] == "group-8"
    assert all(marker not in json.dumps(x) for x in lines)  # no bodies


LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_logfmt(line: str) -> dict[str, str]:
    pairs = LOGFMT.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line  # nothing unparsed
    return {k: json.loads(v) if v.startswith('"') else v for k, v in pairs}


async def test_logfmt_access_log(api, caplog):
    caplog.set_level(logging.INFO, logger="server.access")
    nasty = 'id with "quotes", = signs and a \\ backslash'
    r = await api.post("/api/replicache/push?spaceID=bad%20id", {}, {"X-Replicache-RequestID": nasty})
    assert r.status == 400
    lines = _access_lines(caplog)
    assert len(lines) == 1 and "\n" not in lines[0]
    fields = parse_logfmt(lines[0])
    assert fields["method"] == "POST" and fields["status"] == "400"
    assert fields["requestID"] == nasty and fields["space"] == "bad id"
    assert fields["error"] == "InvalidSpaceID" and "message" in fields


@pytest.mark.gen_test(timeout=120)
async def test_server_process_writes_bare_json_lines(tmp_path):
    """python -m server: each access line alone on stderr, parseable whole."""
    server = LiveServer("--log-format", "json", data_dir=tmp_path)
    await asyncio.to_thread(server.start)
    try:
        r = await AsyncHTTPClient().fetch(
            server.url + "/healthz", headers={"X-Replicache-RequestID": "live-1"}
        )
        assert r.code == 200
        deadline = time.monotonic() + 10  # the output is read by a thread: poll
        while not any('"requestID":"live-1"' in line for line in server.output):
            assert time.monotonic() < deadline, server.output
            await asyncio.sleep(0.05)
        [line] = [line for line in server.output if '"requestID":"live-1"' in line]
        fields = json.loads(line)
        assert fields["path"] == "/healthz" and fields["status"] == 200
    finally:
        await asyncio.to_thread(server.stop)
