"""docs/embedding.md (issue 14.4): its example, run as it stands on the page, against the
test database: its own route, its mutators behind the mounted sync endpoints, its backend
write poking a listener, and its shutdown."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys

import pytest

from server.embedded import free_port
from server.testing import ROOT, listen
from tests.helpers import Api, mutation, uid

DOC = ROOT / "docs" / "embedding.md"


def example_module(tmp_path):
    """The page's Python example, as the module myapp."""
    [source] = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    path = tmp_path / "myapp.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("myapp", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.gen_test(timeout=60)
async def test_the_documented_example_runs(tmp_path, mongo_uri, http_client):
    myapp = example_module(tmp_path)
    port, stop = free_port(), asyncio.Event()
    running = asyncio.create_task(myapp.run(mongo_uri, port, stop))
    base = f"http://127.0.0.1:{port}"
    api = Api(http_client, base)
    try:
        for _ in range(200):  # until it listens (run() has no event for that: poll)
            assert not running.done(), running
            try:
                r = await http_client.fetch(base + "/healthz", raise_error=False)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)
        # /healthz is not mounted: the app's own 404.
        assert r.code == 404 and b"replicache" not in r.body.lower()

        space = await api.create_space()
        client = uid("c-")
        todos = [
            mutation(1, client, "createTodo", {"id": "1", "text": "milk"}),
            mutation(2, client, "createTodo", {"id": "2", "text": "bread"}),
            mutation(3, client, "setDone", {"id": "1", "done": True}),
            mutation(4, client, "setDone", {"id": "9", "done": True}),  # fails alone
            mutation(5, client, "increment", 1),  # not this app's: fails alone
        ]
        assert (await api.push(space, uid("g-"), todos)).body == {}
        assert await api.view(space) == {
            "todo/1": {"text": "milk", "done": True},
            "todo/2": {"text": "bread", "done": False},
        }

        stream = await listen(base, space)
        try:
            r = await api.post(f"/spaces/{space}/archive", {})
            assert r.status == 200 and r.body == {"version": 2}
            await stream.wait_for("poke")
        finally:
            stream.close()
        assert await api.view(space) == {
            "archive/1": {"text": "milk", "done": True},
            "todo/2": {"text": "bread", "done": False},
        }
        r = await http_client.fetch(f"{base}/admin/api/spaces", raise_error=False)
        assert r.code == 404  # no ADMIN_TOKEN: no admin routes
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)  # a clean shutdown
        sys.modules.pop("myapp", None)
