"""Checklist 13: with auth on, a request with a missing or invalid Authorization is a 401
(a valid token for another space: 403) and leaves the whole database as it was (every
collection, every document)."""

from __future__ import annotations

import pytest

from server import auth
from tests.helpers import mutation
from tests.snapshot import differences, snapshot

pytestmark = pytest.mark.gen_test

SECRET = "unauthorized-test-secret"


def bearer(space: str, *, secret: str = SECRET, ttl: float = 3600, user: str = "alice") -> str:
    return "Bearer " + auth.mint(secret, space, user, ttl)


def invalid(space: str) -> dict[str, dict[str, str]]:
    """Authorization headers that must not be let in to `space`."""
    good = auth.mint(SECRET, space, "alice", 3600)
    head, payload, signature = good.split(".")
    return {
        "none": {},
        "empty": {"Authorization": ""},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "another space": {"Authorization": bearer("other-space")},
        "expired": {"Authorization": bearer(space, ttl=-1)},
        "another secret": {"Authorization": bearer(space, secret="not-the-secret")},
        "cut signature": {"Authorization": f"Bearer {head}.{payload}.{signature[:-2]}"},
        "in the query only": {},  # with ?auth=<a good token>, which only the poke stream takes
    }


@pytest.mark.parametrize("settings", [{"auth_secret": SECRET}], indirect=True)
async def test_push_and_pull_with_an_invalid_authorization_are_401_and_change_nothing(
    api, settings, mongo_client, db_name
):
    space = "locked"
    ok = {"Authorization": bearer(space)}
    assert (await api.post("/api/replicache/createSpace", {"spaceID": space}, ok)).status == 200
    # Some state to leave alone: a group with a client that pushed once.
    push = {"profileID": "p", "clientGroupID": "g1", "pushVersion": 1, "schemaVersion": ""}
    r = await api.post(
        f"/api/replicache/push?spaceID={space}", {**push, "mutations": [mutation(1, "c1")]}, ok
    )
    assert (r.status, r.body) == (200, {})
    before = await snapshot(mongo_client, db_name)

    token = auth.mint(SECRET, space, "alice", 3600)
    attempts = [
        # the next mutation of a known client, a new client of a known group, a new group
        {**push, "mutations": [mutation(2, "c1", args=10)]},
        {**push, "mutations": [mutation(1, "c2", args=100)]},
        {**push, "clientGroupID": "g2", "mutations": [mutation(1, "c3", args=1000)]},
    ]
    pull = {"profileID": "p", "clientGroupID": "g3", "cookie": None, "pullVersion": 1, "schemaVersion": ""}
    for why, headers in invalid(space).items():
        query = f"spaceID={space}" + (f"&auth={token}" if why == "in the query only" else "")
        # A genuine token for another space: the user is known, the space is not theirs.
        status, error = (403, "Forbidden") if why == "another space" else (401, "Unauthorized")
        for body in attempts:
            r = await api.post(f"/api/replicache/push?{query}", body, headers)
            assert r.status == status and r.body["error"] == error, (why, r.body)
        r = await api.post(f"/api/replicache/pull?{query}", pull, headers)
        assert r.status == status and r.body["error"] == error, (why, r.body)
        r = await api.post("/api/replicache/createSpace", {"spaceID": "another"}, headers)
        assert r.status == status, (why, r.body)
        after = await snapshot(mongo_client, db_name)
        assert after == before, (why, differences(before, after))

    # The same requests with the token: applied, once.
    for body in attempts:
        r = await api.post(f"/api/replicache/push?spaceID={space}", body, ok)
        assert (r.status, r.body) == (200, {})
    r = await api.post(f"/api/replicache/pull?spaceID={space}", {**pull, "clientGroupID": "g1"}, ok)
    assert r.body["patch"] == [{"op": "put", "key": "count", "value": 1111}]
    assert r.body["lastMutationIDChanges"] == {"c1": 2, "c2": 1}
