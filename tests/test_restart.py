"""A server process restarted on the same data dir keeps data, lmids and cookies."""

from __future__ import annotations

import json
import urllib.request

from server.testing import LiveServer, mutation, pull_body, push_body


def post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def pull(url: str, space: str, cookie=None) -> dict:
    return post(url, f"/api/replicache/pull?spaceID={space}", pull_body("g1", cookie))


def test_restart_keeps_data_and_cookies(tmp_path):
    with LiveServer(data_dir=tmp_path) as server:
        post(server.url, "/api/replicache/createSpace", {"spaceID": "kept"})
        push = push_body("g1", [mutation(1, "c1", args=5), mutation(2, "c1", args=6)])
        post(server.url, "/api/replicache/push?spaceID=kept", push)
        before = pull(server.url, "kept")
    with LiveServer(data_dir=tmp_path) as server:
        after = pull(server.url, "kept")
        assert after == before
        assert after["patch"] == [{"op": "put", "key": "count", "value": 11}]
        assert after["lastMutationIDChanges"] == {"c1": 2}
        assert pull(server.url, "kept", before["cookie"])["cookie"] == before["cookie"]
