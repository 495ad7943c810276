"""The real replicache client under Node, 15.3.0 and 14.2.2 (checklist 44; the npm alias
replicache-14, pinned in package.json), in memory against a live server.

tests/client/scenarios.mjs runs every scenario once per version and prints a JSON report;
each test below checks one scenario's part of it, for each version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.testing import LiveServer
from tests.client.node import node_report, scenario

SCRIPT = Path(__file__).with_name("scenarios.mjs")


VERSIONS = {"replicache": "15.3.0", "replicache-14": "14.2.2"}  # npm package: its version


@pytest.fixture(scope="module", params=list(VERSIONS))
def report(request, live_server: LiveServer) -> dict[str, Any]:
    result = node_report(SCRIPT, live_server.url, request.param)
    assert result["version"] == VERSIONS[request.param]  # the pinned client ran, no other
    return result


def test_two_clients_converge_after_interleaved_increments(report):
    s = scenario(report, "twoClients")
    assert s["server"] == 1010
    assert s["counts"] == [1010, 1010]
    assert s["pending"] == [0, 0]
    assert len(set(s["clientGroupIDs"])) == 2


def test_two_instances_of_one_client_group_converge(report):
    s = scenario(report, "sameName")
    assert s["clientGroupIDs"][0] == s["clientGroupIDs"][1]
    assert s["clientIDs"][0] != s["clientIDs"][1]
    assert s["server"] == 88
    assert s["counts"] == [88, 88]
    assert s["pending"] == [0, 0]


def test_offline_client_converges_without_double_counting(report):
    s = scenario(report, "offline")
    assert s["attempts"]["offline"] >= 2
    assert s["onlineChanges"][0] is False
    assert s["onlineChanges"][-1] is True
    # Offline: its 5 increments wait locally; none reached the server.
    assert s["whileOffline"]["pending"] == 5
    assert s["whileOffline"]["server"] == 202
    assert s["whileOffline"]["count"] in (7, 207)
    # Answers lost: the server applied the 5 once though the client sent them again.
    assert s["attempts"]["lost"] >= 2
    assert s["whileLost"] == {"pending": 5, "server": 207}
    assert s["server"] == 207
    assert s["counts"] == [207, 207]
    assert s["pending"] == [0, 0]


def test_lying_client_mutator_snaps_back_to_the_server_value(report):
    s = scenario(report, "lyingMutator")
    assert s["shownAfterLie"] == 1001  # its own optimistic lie, shown until the pull
    assert s["server"] == 3
    assert s["counts"] == [3, 3]
    assert s["pending"] == [0, 0]


def test_no_client_logs_a_rejected_pull_response(report):
    bad = report["badLines"]
    # The canary client broke the cookie rules on purpose: the check sees its lines
    # (14.x has no "did not change, but" check of its own).
    canary = " ".join(line["text"] for line in bad if line["who"] == "canary")
    assert scenario(report, "canary")["pulls"] >= 3
    assert "is < than last snapshot" in canary
    if report["version"] != "14.2.2":
        assert "did not change, but" in canary
    assert [line for line in bad if line["who"] != "canary"] == []
    assert report["events"] == []
