"""Per-client-group push rate limit: a token bucket, off by default, 429 with Retry-After."""

from __future__ import annotations

import pytest

from server.rate_limiter import RateLimiter
from tests.helpers import mutation

pytestmark = pytest.mark.gen_test


async def test_token_bucket():
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("g") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("g") == pytest.approx(0.5)
    assert limiter.take("other") == 0  # buckets are per group
    now[0] += 0.5
    assert limiter.take("g") == 0
    assert limiter.take("g") == pytest.approx(0.5)
    now[0] += 60  # refills up to the burst, no further
    assert [limiter.take("g") for _ in range(4)][-1] == pytest.approx(0.5)


async def test_off_by_default(api):
    space = await api.create_space()
    for i in range(1, 31):  # more than the default burst
        assert (await api.push(space, "g1", [mutation(i, "c1")])).status == 200


@pytest.mark.parametrize("settings", [{"push_rate": 0.01, "push_burst": 2}], indirect=True)
async def test_over_the_rate_is_429_and_not_applied(api, settings):
    space = await api.create_space()
    assert (await api.push(space, "g1", [mutation(1, "c1")])).status == 200
    assert (await api.push(space, "g1", [mutation(2, "c1")])).status == 200
    r = await api.push(space, "g1", [mutation(3, "c1", args=100)])
    assert r.status == 429 and r.body["error"] == "RateLimited" and r.body["message"]
    assert int(r.headers["Retry-After"]) >= 99  # one push per 100 s
    assert r.headers["Content-Type"].startswith("application/json")
    assert (await api.push(space, "g2", [mutation(1, "c2")])).status == 200  # another group is free
    assert await api.view(space) == {"count": 3}
    r = await api.pull(space, "g1")
    assert r.body["lastMutationIDChanges"] == {"c1": 2}
