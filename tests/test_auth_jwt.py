"""Standard JWTs (issue 15): a shared secret, a PEM public key, or a JWKS served by a
loopback server in the test; every refusal through HTTP, counted by reason."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.auth.jwks import JWKS
from server.auth.jwts import algorithms_for_key, load_public_key
from server.config import Settings
from server.testing import ROOT, push_body
from tests.helpers import Api, Reply, group_users, mutation, uid
from tests.jwtkit import KeyServer, claims, ec_key, ed_key, hs_secret, jwk, public_pem, rsa_key, sign
from tests.test_auth import sse_status
from tests.test_ops import delta, scrape

pytestmark = pytest.mark.gen_test

RSA, RSA2, EC, EC2, ED, ED2 = rsa_key(), rsa_key(), ec_key(), ec_key(), ed_key(), ed_key()
HS = hs_secret()
SPACE = "s1"
URL_SECRET = "jwks-url-secret-" + "u" * 12


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    with KeyServer() as server:
        yield server


@pytest.fixture
def settings(request, key_server, tmp_path) -> Settings:
    """Indirect params: Settings fields, plus "pem" (a private key whose public half goes
    in a --jwt-public-key file) and "jwks" (True: --jwks-url is the test's KeyServer)."""
    param = dict(getattr(request, "param", {}))
    if "pem" in param:
        path = tmp_path / "public.pem"
        path.write_text(public_pem(param.pop("pem")))
        param["jwt_public_key"] = str(path)
    if param.pop("jwks", False):
        param["jwks_url"] = key_server.url + "/jwks.json?key=" + URL_SECRET  # a URL may hold a secret
    return Settings(**param)


@pytest.fixture
def space(io_loop, store) -> str:
    io_loop.run_sync(lambda: store.create_space(SPACE))
    return SPACE


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def push(api: Api, token: str | None, space: str = SPACE, group: str | None = None) -> Reply:
    body = push_body(group or uid("g-"), [mutation(1, uid("c-"))])
    return await api.post(f"/api/replicache/push?spaceID={space}", body, bearer(token))


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def with_alg(token: str, alg: str) -> str:
    """The token with another alg in its header (the signature no longer matters: the
    server must refuse the algorithm before it checks one)."""
    head, rest = token.split(".", 1)
    return f"{b64({**json.loads(base64.urlsafe_b64decode(head + '==')), 'alg': alg})}.{rest}"


def unsigned(body: dict[str, Any]) -> str:
    """alg none, the way an attacker writes it (PyJWT will not)."""
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(body)}."


def hs256_with(secret: bytes, body: dict[str, Any], kid: str | None = None) -> str:
    """HS256 "signed" with a public key's PEM as the secret: the classic key confusion."""
    head = b64({"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})})
    signed = f"{head}.{b64(body)}"
    return f"{signed}.{b64(hmac.new(secret, signed.encode(), hashlib.sha256).digest())}"


async def refused(api: Api, token: str | None, status: int, words: str, space: str = SPACE) -> None:
    r = await push(api, token, space)
    assert r.status == status, (r.status, r.body)
    assert r.body["error"] == {401: "Unauthorized", 403: "Forbidden", 503: "AuthUnavailable"}[status]
    assert words in r.body["message"], r.body


@pytest.mark.parametrize("settings", [{"jwt_secret": HS}], indirect=True)
async def test_shared_secret_tokens(settings, api, space, store):
    for alg in ("HS256", "HS384", "HS512"):
        r = await push(api, sign(HS, claims(f"user-{alg}", [SPACE]), alg), group=f"g-{alg}")
        assert r.status == 200, r.body
        assert (await group_users(store, SPACE))[f"g-{alg}"] == f"user-{alg}"
    assert (await push(api, sign(HS, claims(spaces="*"), "HS256"))).status == 200
    assert (await push(api, sign(HS, claims(spaces=SPACE), "HS256"))).status == 200
    assert (await push(api, sign(HS, claims(spaces=["x", "*"]), "HS256"))).status == 200
    # exp a little in the past: within the 30 s leeway
    assert (await push(api, sign(HS, claims(ttl=-10), "HS256"))).status == 200

    await refused(api, None, 401, "token is required")
    await refused(api, "not.a.jwt", 401, "malformed")
    await refused(api, unsigned(claims()), 401, "alg none")
    await refused(api, sign(RSA, claims(), "RS256"), 401, "does not match the server's key")
    await refused(api, sign(hs_secret(), claims(), "HS256"), 401, "bad token signature")
    good = sign(HS, claims(), "HS256")
    head, body, sig = good.split(".")
    await refused(api, f"{head}.{b64(claims(user='mallory'))}.{sig}", 401, "bad token signature")
    await refused(api, sign(HS, claims(ttl=-120), "HS256"), 401, "expired")
    await refused(api, sign(HS, claims(nbf=int(time.time()) + 600), "HS256"), 401, "not valid yet")
    no_exp = claims()
    del no_exp["exp"]
    await refused(api, sign(HS, no_exp, "HS256"), 401, "no exp claim")
    no_sub = claims()
    del no_sub["sub"]
    await refused(api, sign(HS, no_sub, "HS256"), 401, "no sub claim")
    await refused(api, sign(HS, claims(user=""), "HS256"), 401, "sub claim")
    await refused(api, sign(HS, claims(spaces=7), "HS256"), 401, "'spaces' claim")
    # A good token, the wrong space: 403, the user is known.
    await refused(api, sign(HS, claims(spaces=["other"]), "HS256"), 403, "may not use space 's1'")
    await refused(api, sign(HS, claims(spaces=None), "HS256"), 403, "may not use space 's1'")
    await refused(api, sign(HS, claims(spaces=[]), "HS256"), 403, "may not use space 's1'")
    assert len(await group_users(store, SPACE)) == 7  # the 7 accepted; the refused made none


@pytest.mark.parametrize(
    ("settings", "key", "other", "algs", "wrong_alg"),
    [
        ({"pem": RSA}, RSA, RSA2, ["RS256", "RS512", "PS256"], "ES256"),
        ({"pem": EC}, EC, EC2, ["ES256"], "ES384"),
        ({"pem": ED}, ED, ED2, ["EdDSA"], "RS256"),
    ],
    indirect=["settings"],
)
async def test_public_key_tokens(settings, api, space, key, other, algs, wrong_alg):
    for alg in algs:
        assert (await push(api, sign(key, claims(), alg))).status == 200, alg
    pem = public_pem(key).encode()
    await refused(api, hs256_with(pem, claims()), 401, "algorithm HS256 does not match")
    await refused(api, unsigned(claims()), 401, "alg none")
    await refused(api, sign(other, claims(), algs[0]), 401, "bad token signature")
    await refused(api, with_alg(sign(key, claims(), algs[0]), wrong_alg), 401, f"{wrong_alg} does not match")
    await refused(api, sign(key, claims(ttl=-3600), algs[0]), 401, "expired")
    await refused(api, sign(key, claims(spaces=["other"]), algs[0]), 403, "may not use")


@pytest.mark.parametrize(
    "settings",
    [
        {
            "jwt_secret": HS,
            "jwt_audience": "sync",
            "jwt_issuer": "https://id.example",
            "jwt_spaces_claim": "app/sp",
        }
    ],
    indirect=True,
)
async def test_audience_issuer_and_a_custom_spaces_claim(settings, api, space):
    def token(**extra: Any) -> str:
        made = {**claims(spaces=None), "aud": "sync", "iss": "https://id.example", "app/sp": [SPACE], **extra}
        return sign(HS, {k: v for k, v in made.items() if v is not None}, "HS256")

    assert (await push(api, token())).status == 200
    assert (await push(api, token(aud=["other", "sync"]))).status == 200
    await refused(api, token(aud="other"), 401, "audience")
    await refused(api, token(aud=None), 401, "no aud claim")
    await refused(api, token(iss="https://evil.example"), 401, "issuer")
    await refused(api, token(iss=None), 401, "no iss claim")
    await refused(api, token(**{"app/sp": ["other"]}), 403, "may not use")
    # The default claim name means nothing here.
    await refused(api, token(**{"app/sp": None, "spaces": "*"}), 403, "may not use")


@pytest.mark.parametrize("settings", [{"jwt_secret": HS}], indirect=True)
async def test_create_space_and_the_poke_stream_check_it_too(settings, api, space):
    create = "/api/replicache/createSpace"
    r = await api.post(create, {"spaceID": "mine"}, bearer(sign(HS, claims(spaces=["mine"]), "HS256")))
    assert r.status == 200 and r.body == {"spaceID": "mine"}
    r = await api.post(create, {"spaceID": "yours"}, bearer(sign(HS, claims(spaces=["mine"]), "HS256")))
    assert r.status == 403
    r = await api.post(create, {}, bearer(sign(HS, claims(spaces=["mine"]), "HS256")))
    assert r.status == 403 and "random id" in r.body["message"]
    r = await api.post(create, {}, bearer(sign(HS, claims(spaces="*"), "HS256")))
    assert r.status == 200
    r = await api.post(create, {"spaceID": "x"}, bearer(sign(HS, claims(ttl=-600), "HS256")))
    assert r.status == 401
    port = int(api.base_url.rsplit(":", 1)[1])
    path = f"/api/replicache/poke?spaceID={SPACE}"
    assert await sse_status(port, path) == b"HTTP/1.1 401 Unauthorized"
    assert await sse_status(port, f"{path}&auth={sign(HS, claims(spaces=['x']), 'HS256')}") == (
        b"HTTP/1.1 403 Forbidden"
    )
    assert await sse_status(port, f"{path}&auth={sign(HS, claims(), 'HS256')}") == b"HTTP/1.1 200 OK"


def refusals(samples: dict) -> dict[str, float]:
    return {
        reason: delta(samples, {}, "replicache_refused_total", reason=reason)
        for reason in ("auth_missing", "auth_invalid", "auth_expired", "auth_forbidden", "auth_unavailable")
    }


@pytest.mark.parametrize("settings", [{"jwks": True, "jwks_refetch_seconds": 0}], indirect=True)
async def test_refusals_are_counted_by_reason(settings, api, space, key_server, http_client, base_url):
    before = refusals(await scrape(http_client, base_url))
    await refused(api, sign(RSA, claims(), "RS256", kid="k1"), 503, "could not be fetched")  # empty JWKS
    key_server.keys = [jwk(RSA, "k1", "RS256")]
    await refused(api, None, 401, "required")
    await refused(api, sign(RSA2, claims(), "RS256", kid="k1"), 401, "signature")
    await refused(api, sign(RSA, claims(), "RS256", kid="nope"), 401, "unknown key id")
    await refused(api, sign(RSA, claims(ttl=-600), "RS256", kid="k1"), 401, "expired")
    await refused(api, sign(RSA, claims(ttl=-900), "RS256", kid="k1"), 401, "expired")
    await refused(api, sign(RSA, claims(spaces=["x"]), "RS256", kid="k1"), 403, "may not use")
    assert (await push(api, sign(RSA, claims(), "RS256", kid="k1"))).status == 200
    after = refusals(await scrape(http_client, base_url))
    counted = {reason: after[reason] - before[reason] for reason in after}
    assert counted == {
        "auth_missing": 1,
        "auth_invalid": 2,
        "auth_expired": 2,
        "auth_forbidden": 1,
        "auth_unavailable": 1,
    }


@pytest.mark.parametrize("settings", [{"jwks": True, "jwks_refetch_seconds": 0}], indirect=True)
async def test_jwks_rotation_and_outage(settings, api, space, key_server, http_client, base_url, caplog):
    shared = b"a shared secret, published: " + b"x" * 32
    key_server.keys = [jwk(RSA, "old", "RS256"), {"kty": "oct", "k": b64(shared), "kid": "oct"}]
    assert (await push(api, sign(RSA, claims(), "RS256", kid="old"))).status == 200
    # A JWKS must not hand out shared secrets: an "oct" key is ignored.
    await refused(api, sign(shared, claims(), "HS256", kid="oct"), 401, "unknown key id")
    ready = json.loads((await http_client.fetch(base_url + "/readyz")).body)
    assert ready["auth"]["jwks"]["state"] == "ok" and ready["auth"]["jwks"]["keys"] == 1

    # Rotation: the provider publishes a new key; a token naming it is the first to see it.
    key_server.keys = [jwk(RSA, "old", "RS256"), jwk(EC, "new")]  # "new" has no alg: its curve's
    assert (await push(api, sign(EC, claims(), "ES256", kid="new"))).status == 200
    await refused(api, with_alg(sign(EC, claims(), "ES256", kid="new"), "ES384"), 401, "does not match")
    await refused(api, with_alg(sign(RSA, claims(), "RS256", kid="old"), "PS256"), 401, "does not match")

    # The provider goes down: the keys at hand keep working, and /readyz says so.
    fetches = key_server.fetches
    key_server.stop()
    with caplog.at_level(logging.WARNING, logger="server.auth.jwks"):
        await refused(api, sign(RSA, claims(), "RS256", kid="unknown"), 401, "unknown key id")
    assert any(
        "JWKS fetch" in r.getMessage() and "keeping the 2 keys" in r.getMessage() for r in caplog.records
    )
    assert (await push(api, sign(RSA, claims(), "RS256", kid="old"))).status == 200
    assert (await push(api, sign(EC, claims(), "ES256", kid="new"))).status == 200
    r = await http_client.fetch(base_url + "/readyz", raise_error=False)
    detail = json.loads(r.body)["auth"]["jwks"]
    assert r.code == 200 and detail["state"] == "stale" and detail["keys"] == 2
    assert "Connection" in detail["lastError"] or "refused" in detail["lastError"]
    assert key_server.fetches == fetches  # it is down: nothing reached it
    assert URL_SECRET not in caplog.text and URL_SECRET not in r.body.decode()


@pytest.mark.parametrize("settings", [{"jwks": True}], indirect=True)
async def test_jwks_never_reached_is_a_503_and_not_ready(
    settings, api, space, key_server, http_client, base_url
):
    key_server.stop()
    await refused(api, sign(RSA, claims(), "RS256", kid="k"), 503, "could not be fetched")
    r = await http_client.fetch(base_url + "/readyz", raise_error=False)
    body = json.loads(r.body)
    assert r.code == 503 and body["error"] == "AuthUnavailable"
    assert body["auth"]["jwks"]["state"] == "unavailable"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_jwks_fetches_are_bounded(key_server):
    """A flood of made-up key ids costs one fetch per refetch period; stale keys are
    refetched in the background; concurrent needs share one fetch."""
    key_server.keys = [jwk(RSA, "a", "RS256")]
    clock = Clock()
    jwks = JWKS(key_server.url + "/jwks.json", refetch_seconds=30, cache_seconds=300, clock=clock)
    assert (await jwks.key("a", "RS256")).key_id == "a"
    assert key_server.fetches == 1

    async def try_kid(kid: str) -> int:
        try:
            await jwks.key(kid, "RS256")
            return 200
        except Exception as e:
            return e.status  # type: ignore[attr-defined]

    assert await asyncio.gather(*(try_kid(f"fake-{i}") for i in range(50))) == [401] * 50
    assert key_server.fetches == 1  # within 30 s of the last fetch: none
    key_server.keys = [jwk(RSA, "a", "RS256"), jwk(RSA2, "b", "RS256")]
    assert await try_kid("b") == 401  # rotated, but too soon to look again
    clock.now += 30
    statuses = await asyncio.gather(*(try_kid(k) for k in ["b", "fake-x", "fake-y", "b"]))
    assert statuses == [200, 401, 401, 200] and key_server.fetches == 2  # one fetch, shared
    # The provider withdraws "a": once the cache is old, a background fetch drops it.
    key_server.keys = [jwk(RSA2, "b", "RS256")]
    clock.now += 300
    assert await try_kid("a") == 200  # served from the cache while the refetch runs
    for _ in range(100):
        if key_server.fetches == 3 and jwks._pending is None:
            break
        await asyncio.sleep(0.01)
    assert key_server.fetches == 3
    clock.now += 1  # no fetch may run for 29 s more, so the verdict comes from the new set
    assert await try_kid("a") == 401
    assert jwks.status()["state"] == "ok" and jwks.status()["keys"] == 1


def test_settings_choose_one_source(tmp_path):
    def error(*argv: str) -> None:
        with pytest.raises(SystemExit):
            Settings.from_args(list(argv), env={})

    error("--jwt-secret", "x", "--jwks-url", "http://127.0.0.1:1/jwks.json")
    error("--auth-secret", "x", "--jwt-secret", "y")
    error("--jwt-public-key", str(tmp_path / "missing.pem"))
    (tmp_path / "private.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    error("--jwt-public-key", str(tmp_path / "private.pem"))
    (tmp_path / "junk.pem").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    error("--jwt-public-key", str(tmp_path / "junk.pem"))
    (tmp_path / "ok.pem").write_text(public_pem(ED))
    assert Settings.from_args(["--jwt-public-key", str(tmp_path / "ok.pem")], env={}).jwt_public_key
    env = {"JWT_PUBLIC_KEY": public_pem(EC), "JWT_AUDIENCE": "a", "JWT_SPACES_CLAIM": "sp"}
    made = Settings.from_args([], env=env)  # the PEM text itself works in the env variable
    assert (made.jwt_audience, made.jwt_spaces_claim) == ("a", "sp")
    assert (
        Settings.from_args(
            [], env={"JWKS_URL": "http://x/j", "JWKS_REFETCH_SECONDS": "5"}
        ).jwks_refetch_seconds
        == 5
    )


def test_help_prefers_env_variables_and_never_shows_a_secret():
    secrets = {"AUTH_SECRET": "s3cret-auth-value", "ADMIN_TOKEN": "s3cret-admin-value"}
    out = subprocess.run(
        [sys.executable, "-m", "server", "--help"],
        cwd=ROOT,
        env={**secrets, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "prefer the environment" in " ".join(out.split())
    for value in secrets.values():
        assert value not in out
    for flag in ("--jwt-secret", "--jwt-public-key", "--jwks-url", "--jwt-spaces-claim", "--auth-hook"):
        assert flag in out


def test_pem_file_and_text(tmp_path: Path):
    (tmp_path / "k.pem").write_text(public_pem(RSA))
    assert algorithms_for_key(load_public_key(str(tmp_path / "k.pem")))[0] == "RS256"
    assert algorithms_for_key(load_public_key(public_pem(EC))) == ("ES256",)
    assert algorithms_for_key(load_public_key(public_pem(ED))) == ("EdDSA",)
