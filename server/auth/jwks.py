"""--jwks-url: an identity provider's public keys, fetched with a timeout and cached.

Fetched on first use, then again:
- when the cache is older than cache_seconds, in the background (requests go on with
  the keys at hand), so a key the provider withdrew stops working;
- when a token names a key id (`kid`) the cache lacks: a rotation. At most once every
  refetch_seconds, so a flood of tokens with made-up key ids costs one fetch per period.
A fetch that fails keeps the last good keys, is logged, and shows in /readyz.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jwt
from tornado.httpclient import AsyncHTTPClient

from server.auth.identity import invalid, unavailable
from server.auth.jwts import algorithms_for_jwk, mismatch

log = logging.getLogger(__name__)


def signing_keys(document: Any) -> dict[str | None, dict[str, Any]]:
    """The usable signature keys of a JWKS document, by key id; ValueError if none."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError('not a JWKS: no "keys" list')
    usable: dict[str | None, dict[str, Any]] = {}
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid, algorithms = jwk.get("kid"), algorithms_for_jwk(jwk)
        if (kid is not None and not isinstance(kid, str)) or not algorithms:
            continue
        try:
            jwt.PyJWK(jwk, algorithms[0])  # a key PyJWT cannot load is skipped, not fatal
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        usable[kid] = jwk
    if not usable:
        raise ValueError("the JWKS has no usable signature keys")
    return usable


class JWKS:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        cache_seconds: float = 300.0,
        refetch_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.refetch_seconds = refetch_seconds
        self.clock = clock
        self.fetches = 0
        self.error = ""  # why the last fetch failed; "" after a good one
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._loaded: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._fetched: float | None = None  # last good fetch
        self._tried: float | None = None  # last attempt
        self._pending: asyncio.Future[None] | None = None
        self._background: set[asyncio.Future[None]] = set()

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key for a token's header: 401 for an unknown kid or an algorithm its key does
        not take; 503 while no key was ever fetched."""
        await self.ready()
        if not self._keys:
            raise unavailable("the identity provider's keys (JWKS) could not be fetched; retry later")
        now = self.clock()
        if self._fetched is not None and now - self._fetched >= self.cache_seconds and self._may_fetch(now):
            task = asyncio.ensure_future(self.refresh())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        jwk = self._find(kid)
        if jwk is None and kid is not None and self._may_fetch(now):
            await self.refresh()
            jwk = self._find(kid)
        if jwk is None:
            raise invalid("unknown key id (kid)" if kid is not None else "token names no key id (kid)")
        algorithms = algorithms_for_jwk(jwk)
        if alg not in algorithms:
            raise mismatch(alg, algorithms)
        loaded = self._loaded.get((kid, alg))
        if loaded is None:
            loaded = self._loaded[(kid, alg)] = jwt.PyJWK(jwk, alg)
        return loaded

    async def ready(self) -> bool:
        """True once keys are at hand; fetches them first if none are (and a fetch may run)."""
        if not self._keys and self._may_fetch(self.clock()):
            await self.refresh()
        return bool(self._keys)

    def status(self) -> dict[str, Any]:
        """For /readyz: ok, stale (the last fetch failed; the last good keys still serve)
        or unavailable (no key yet)."""
        age = None if self._fetched is None else round(self.clock() - self._fetched, 1)
        state = "unavailable" if not self._keys else "stale" if self.error else "ok"
        detail: dict[str, Any] = {"state": state, "keys": len(self._keys), "ageSeconds": age}
        if self.error:
            detail["lastError"] = self.error
        return detail

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None:  # no kid: fine while the set holds one key
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _may_fetch(self, now: float) -> bool:
        return self._tried is None or now - self._tried >= self.refetch_seconds

    async def refresh(self) -> None:
        """One fetch at a time: callers that arrive meanwhile wait for the same one."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch())
            self._pending.add_done_callback(self._fetch_done)
        await asyncio.shield(self._pending)

    def _fetch_done(self, _: Any) -> None:
        self._pending = None

    async def _fetch(self) -> None:
        self._tried = self.clock()
        self.fetches += 1
        try:
            response = await AsyncHTTPClient().fetch(
                self.url,
                connect_timeout=self.timeout,
                request_timeout=self.timeout,
                headers={"Accept": "application/json"},
            )
            keys = signing_keys(json.loads(response.body))
        except Exception as e:  # any failure keeps the keys we have
            # The host only: a URL may carry a query credential, and logs must not.
            self.error = f"{type(e).__name__}: {e}"[:200]
            log.warning(
                "JWKS fetch from %s failed (%s); keeping the %d keys fetched before",
                urlsplit(self.url).netloc,
                self.error,
                len(self._keys),
            )
            return
        if keys != self._keys:
            self._loaded = {}
        self._keys, self._fetched, self.error = keys, self.clock(), ""
