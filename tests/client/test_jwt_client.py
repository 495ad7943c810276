"""The real replicache@15.3.0 client under Node with standard JWTs (issue 15.5): tokens
from the app's backend (a loopback server in the test, RS256, keys in its JWKS), `auth`
set to one, `getAuth` called once it expires."""

from __future__ import annotations

from pathlib import Path

from server.testing import LiveServer
from tests.client.node import node_report
from tests.jwtkit import KeyServer, jwk, rsa_key

SCRIPT = Path(__file__).with_name("jwt_auth.mjs")


def test_client_with_a_jwt_converges_and_renews_it(tmp_path, client_dist):
    key = rsa_key()
    with KeyServer(keys=[jwk(key, "app-key-1", "RS256")], signing=(key, "RS256", "app-key-1")) as provider:
        env = {"JWKS_URL": provider.url + "/jwks.json", "JWT_LEEWAY": "0"}
        with LiveServer(data_dir=tmp_path, env=env) as server:
            report = node_report(SCRIPT, server.url, provider.url + "/token", timeout=120)
        assert report["ok"], report.get("error")
        assert report["created"] == 200
        assert report["before"] == {"server": 11, "counts": [11, 11]}
        assert report["expiredStatus"] == 401  # the first tokens did expire mid-test
        assert report["after"] == {"server": 1111, "counts": [1111, 1111]}
        # Both clients asked for a new token after theirs expired, and only then.
        assert report["getAuthBefore"] == [0, 0]
        assert all(calls >= 1 for calls in report["getAuthAfter"]), report["getAuthAfter"]
        assert report["events"] == [] and report["errorLines"] == []
        assert provider.fetches >= 1  # the server verified against the provider's JWKS
