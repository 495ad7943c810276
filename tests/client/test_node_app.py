"""The real replicache@15.3.0 client under Node against a server for an app of its own
(issue 14): --mutators with a setTitle module, server-side writes, backup and restore.

tests/client/app_scenarios.mjs runs every scenario once and prints a JSON report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from server.testing import LiveServer
from tests.client.node import node_report, scenario

SCRIPT = Path(__file__).with_name("app_scenarios.mjs")
TOKEN = "app-admin-token-" + "y" * 20

# The test's own app: setTitle only. It replaces the built-in increment.
MODULE = """
async def set_title(tx, args):
    if not isinstance(args, dict) or not isinstance(args.get("title"), str):
        raise TypeError(f"setTitle expects {{title: string}}, got {args!r}")
    await tx.put("title", args["title"])

MUTATORS = {"setTitle": set_title}
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory, client_dist) -> dict[str, Any]:
    app = tmp_path_factory.mktemp("app")
    (app / "todo_app_14.py").write_text(MODULE)
    server = LiveServer(
        "--mutators",
        "todo_app_14",
        data_dir=tmp_path_factory.mktemp("app-data"),
        env={"PYTHONPATH": str(app), "ADMIN_TOKEN": TOKEN},
    )
    with server:
        report = node_report(SCRIPT, server.url, env={**os.environ, "ADMIN_TOKEN": TOKEN})
    report["serverOutput"] = server.output
    return report


def test_own_mutators_converge_across_two_clients(report):
    s = scenario(report, "ownMutators")
    assert s["first"]["views"] == [{"title": "from a"}] * 2
    assert s["interleaved"]["server"]["title"] in ("a4", "b4")
    assert s["interleaved"]["views"] == [s["interleaved"]["server"]] * 2
    # increment is not in the module: optimistic on the client, refused by the server.
    assert s["shownAfterIncrement"] == 5
    assert s["server"] == s["interleaved"]["server"] and "count" not in s["server"]
    assert s["views"] == [s["server"]] * 2 and s["pending"] == [0, 0]
    assert any("mutations failed" in line and "'increment'" in line for line in report["serverOutput"])
    assert any("mutators: setTitle (todo_app_14)" in line for line in report["serverOutput"])


def test_a_server_side_write_reaches_a_listening_client(report):
    s = scenario(report, "serverWrite")
    put, mutated, deleted = s["versions"]
    assert put < mutated < deleted
    assert s["pullsOnPokes"] >= 3  # it pulls on pokes only (pullInterval null)
    assert s["server"] == {"title": "a client's push"}
    assert s["views"] == [s["server"]] * 2 and s["pending"] == [0, 0]


def test_restore_over_a_space_brings_both_clients_to_the_backup(report):
    s = scenario(report, "restore")
    expected = {"title": "backed up", **{f"todo/{i}": {"n": i, "text": f"todo {i}"} for i in (1, 2, 3)}}
    assert s["expected"] == expected
    assert s["changed"] != expected  # the writes after the backup happened
    assert s["restored"]["entries"] == 4 and s["restored"]["schema"] == 2
    assert s["csn"] == [1, 1] and s["starts"] == [2, 2]  # each started over once, no loop
    assert s["server"] == expected and s["views"] == [expected] * 2 and s["pending"] == [0, 0]
    assert s["after"] == {**expected, "title": "after the restore"}
    # Into a new id: the copy has the backup, the original and its tabs are untouched.
    assert s["copied"]["spaceID"].startswith("copy-") and s["copy"] == expected
    assert s["original"] == s["after"]
    assert s["afterCopy"]["csn"] == [1, 1] and s["afterCopy"]["views"] == [s["after"]] * 2


def test_no_client_logs_an_error_and_only_the_restore_starts_over(report):
    assert report["badLines"] == []
    # Replicache's own line for the restore's ClientStateNotFound, once per tab; nothing else.
    errors = sorted((line["who"], line["text"].split(",")[0]) for line in report["errorLines"])
    assert errors == [(tab, "Client state not found on server") for tab in ("restore-a", "restore-b")]
    assert sorted(e["who"] for e in report["events"]) == ["restore-a", "restore-b"]
    assert {e["event"] for e in report["events"]} == {"onClientStateNotFound"}
