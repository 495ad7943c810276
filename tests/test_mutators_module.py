"""--mutators MODULE (issue 14.1): your own mutators replace the built-in ones; a module that
cannot serve stops the start-up with one line. The real client with such a module:
tests/client/test_node_app.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from server import mutators
from server.config import Settings
from server.protocol import parse_pull, parse_push
from server.store import Store
from server.testing import ROOT
from tests.helpers import mutation

GOOD = """
from server.mutators import increment

async def set_title(tx, args):
    await tx.put("title", args["title"])

class Callable:
    async def __call__(self, tx, args):
        await tx.delete("title")

MUTATORS = {"setTitle": set_title, "increment": increment, "clearTitle": Callable()}
"""

BROKEN = {
    "no MUTATORS": ("x = 1\n", "the module has no MUTATORS"),
    "a list": ("MUTATORS = [1]\n", "MUTATORS must be a dict of name -> async function, got list"),
    "a plain function": (
        "def f(tx, args): pass\nMUTATORS = {'f': f}\n",
        "MUTATORS['f'] must be an async function",
    ),
    "a lambda": ("MUTATORS = {'f': lambda tx, args: None}\n", "MUTATORS['f'] must be an async function"),
    "a number key": ("async def f(tx, args): pass\nMUTATORS = {1: f}\n", "mutator names are strings"),
    "an empty name": ("async def f(tx, args): pass\nMUTATORS = {'': f}\n", "mutator names are strings"),
    "a failing import": ("import no_such_dependency_14\n", "No module named 'no_such_dependency_14'"),
    "a raising top level": ("x = {}\ny = x['missing']\n", "KeyError: 'missing'"),
    "a syntax error": ("MUTATORS = {\n", "SyntaxError"),
}


def start(tmp_path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "--data-dir", str(tmp_path / "data"), "--port", "1", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_module_that_cannot_serve_stops_the_start_with_one_line(tmp_path, case):
    source, says = BROKEN[case]
    name = "app_mutators_" + case.replace(" ", "_")
    (tmp_path / f"{name}.py").write_text(source)
    done = start(tmp_path, "--mutators", name)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"--mutators {name}: "), done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # stopped before any database started


def test_a_missing_module_stops_the_start_with_one_line(tmp_path):
    name = "no_such_app.mutators"
    for args, env in [(["--mutators", name], None), ([], {"MUTATORS": name})]:
        done = start(tmp_path, *args, env=env)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert (
            done.stderr
            == f"--mutators {name}: no module named 'no_such_app' (is its directory on PYTHONPATH?)\n"
        )


def test_a_module_replaces_the_built_in_mutators(tmp_path, monkeypatch):
    (tmp_path / "good_app_14.py").write_text(textwrap.dedent(GOOD))
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = mutators.load("good_app_14")
    assert sorted(loaded) == ["clearTitle", "increment", "setTitle"]
    assert mutators.load("") is mutators.MUTATORS == {"increment": mutators.increment}
    assert Settings.from_args(["--mutators", "good_app_14"]).mutators == "good_app_14"
    assert Settings.from_args([], env={"MUTATORS": "good_app_14"}).mutators == "good_app_14"


def docs_example() -> str:
    """The worked example of docs/own-app.md "Your own mutators": its first Python block."""
    readme = (ROOT / "docs" / "own-app.md").read_text()
    section = readme[readme.index("## Your own mutators") :]
    return section[section.index("```python\n") + 10 : section.index("```\n", section.index("```python"))]


@pytest.mark.gen_test
async def test_the_docs_example_module_runs_as_written(tmp_path, monkeypatch, mongo_client, db_name):
    package = tmp_path / "todo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mutators.py").write_text(docs_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    store = Store(mongo_client, db_name, mutators=mutators.load("todo.mutators"))
    await store.init()
    space = await store.create_space()
    todos = [
        ("createTodo", {"id": "1", "text": "milk"}),
        ("createTodo", {"id": "2", "text": "bread"}),
        ("createTodo", {"id": "3", "text": "  "}),  # fails alone
        ("setDone", {"id": "1", "done": True}),
        ("setDone", {"id": "9", "done": True}),  # absent: nothing to do
        ("increment", 1),  # replaced: not this app's
    ]
    body = {"clientGroupID": "g", "pushVersion": 1, "profileID": "p", "schemaVersion": ""}
    body["mutations"] = [mutation(i, "c", name, args) for i, (name, args) in enumerate(todos, start=1)]
    assert await store.push(space, parse_push(body)) == {}
    view = await pulled(store, space)
    assert view == {"todo/1": {"text": "milk", "done": True}, "todo/2": {"text": "bread", "done": False}}
    body["mutations"] = [mutation(7, "c", "clearDone", None)]
    assert await store.push(space, parse_push(body)) == {}
    assert await pulled(store, space) == {"todo/2": {"text": "bread", "done": False}}


async def pulled(store: Store, space: str) -> dict:
    reply = json.loads(await store.pull(space, parse_pull({"clientGroupID": "viewer", "cookie": None})))
    return {op["key"]: op["value"] for op in reply["patch"] if op["op"] == "put"}
