"""Who may use which space. One source of identity at a time, chosen by Settings:

- off (no option set): every request is anonymous and allowed;
- --auth-secret: this server's own v1 tokens (server/auth/tokens.py);
- --jwt-secret, --jwt-public-key or --jwks-url: standard JWTs (jwts.py, jwks.py);
- --auth-hook MODULE:FUNCTION: the app's own async check (hook.py).

Replicache sends its `auth` option verbatim as the Authorization header (`Bearer `
optional); EventSource cannot set headers, so the poke stream also takes `?auth=`.
Handlers check credentials before they read a body byte: SpaceAuth and CreateAuth
provide the `authenticate()` that LimitedBody.prepare awaits.
"""

from __future__ import annotations

from typing import Any

from tornado.httputil import HTTPHeaders
from tornado.web import RequestHandler

from server import metrics
from server.auth.demo import PublicDemo
from server.auth.hook import HookSource, Refused
from server.auth.identity import ANY_SPACE, Identity, Refusal, forbidden
from server.auth.jwks import JWKS
from server.auth.jwts import HMAC_ALGS, JWTSource, StaticKey, algorithms_for_key, load_public_key
from server.auth.tokens import DEFAULT_TTL_SECONDS, Claims, V1Source, mint, verify

__all__ = [
    "ANY_SPACE",
    "DEFAULT_TTL_SECONDS",
    "AuthService",
    "Claims",
    "CreateAuth",
    "Identity",
    "Refused",
    "SpaceAuth",
    "authorize",
    "mint",
    "service_of",
    "verify",
]

SOURCES = ("auth_secret", "jwt_secret", "jwt_public_key", "jwks_url", "auth_hook")


def token_from(value: str) -> str:
    value = value.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value


def _source(settings: Any) -> Any:
    chosen = [name for name in SOURCES if getattr(settings, name)]
    if len(chosen) > 1:
        flags = ", ".join("--" + name.replace("_", "-") for name in chosen)
        raise ValueError(f"choose one source of identity, not {flags}")
    if settings.public_demo and chosen != ["auth_secret"]:
        raise ValueError(
            "--public-demo mints this server's own tokens: it needs --auth-secret (and no other auth option)"
        )
    if not chosen:
        return None
    if settings.auth_secret:
        return V1Source(settings.auth_secret)
    if settings.auth_hook:
        return HookSource(settings.auth_hook, settings.auth_hook_timeout)
    if settings.jwt_secret:
        keys: Any = StaticKey(settings.jwt_secret, HMAC_ALGS)
    elif settings.jwt_public_key:
        try:
            key = load_public_key(settings.jwt_public_key)
        except OSError as e:
            raise ValueError(f"--jwt-public-key: {e.strerror}: {e.filename}") from None
        keys = StaticKey(key, algorithms_for_key(key))
    else:
        keys = JWKS(
            settings.jwks_url,
            timeout=settings.jwks_timeout,
            cache_seconds=settings.jwks_cache_seconds,
            refetch_seconds=settings.jwks_refetch_seconds,
        )
    return JWTSource(
        keys,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        spaces_claim=settings.jwt_spaces_claim,
        leeway=settings.jwt_leeway,
    )


class AuthService:
    """The app's one source of identity (None: auth off) and the public demo, if on.
    Built at start-up, so a missing key file or hook module stops the server there."""

    def __init__(self, settings: Any) -> None:
        self.source = _source(settings)
        self.demo = PublicDemo(settings) if settings.public_demo else None

    @property
    def on(self) -> bool:
        return self.source is not None

    @property
    def jwks(self) -> JWKS | None:
        keys = getattr(self.source, "keys", None)
        return keys if isinstance(keys, JWKS) else None

    async def identify(self, handler: Any, space_id: str | None, *, query: bool = False) -> Identity | None:
        """The request's identity (None when auth is off); a counted Refusal otherwise.
        query: also take ?auth= (the poke stream only: EventSource cannot set headers)."""
        if self.source is None:
            return None
        headers: HTTPHeaders = handler.request.headers
        raw = headers.get("Authorization", "")
        if not raw.strip() and query:
            raw = handler.get_query_argument("auth", "")
            if raw:
                headers = HTTPHeaders(headers)
                headers["Authorization"] = raw
        try:
            if isinstance(self.source, HookSource):
                return await self.source.identify(headers, space_id)
            return await self.source.identify(token_from(raw))
        except Refusal as e:
            metrics.connection_refused(e.reason)
            raise

    async def allow(self, handler: Any, identity: Identity | None, space_id: str | None) -> None:
        """403 unless the identity may use space_id (None: a new space with a random id).
        A hook decides each space itself, so it is asked again for a space it has not seen."""
        if identity is None or identity.allows(space_id):
            return
        if isinstance(self.source, HookSource):
            if space_id is not None:  # it was asked with None (createSpace's prepare)
                await self.identify(handler, space_id)
            return
        metrics.connection_refused("auth_forbidden")
        raise forbidden(space_id)


def service_of(handler: Any) -> AuthService:
    """The application's AuthService (make_app builds it; a bare test app gets one here)."""
    settings = handler.application.settings
    if "auth" not in settings:
        settings["auth"] = AuthService(handler.config)
    return settings["auth"]


async def authorize(handler: Any, space_id: str | None, *, query: bool = False) -> str | None:
    """The user id of the request's credentials for space_id (None when auth is off);
    401, 403 or 503 otherwise."""
    auth = service_of(handler)
    identity = await auth.identify(handler, space_id, query=query)
    await auth.allow(handler, identity, space_id)
    return None if identity is None else identity.user_id


def serves(handler: Any) -> bool:
    """Whether the handler answers this method itself: prepare() runs before Tornado's 405
    for a method it lacks, which should stay a 405 in every mode. OPTIONS (CORS
    preflights) never carries credentials."""
    method = handler.request.method.lower()
    return method != "options" and getattr(type(handler), method, None) is not getattr(RequestHandler, method)


class SpaceAuth:
    """For push and pull, whose space is in the query: credentials checked in prepare()."""

    request: Any
    user_id: str | None = None

    async def authenticate(self) -> None:
        if serves(self):
            self.user_id = await authorize(self, self.space_id())  # type: ignore[attr-defined]


class CreateAuth:
    """For createSpace, whose space id is in the body: the credentials are checked in
    prepare() (no body is read for a stranger), the space once the body is parsed."""

    request: Any
    identity: Identity | None = None

    async def authenticate(self) -> None:
        if serves(self):
            self.identity = await service_of(self).identify(self, None)

    async def allow_space(self, space_id: str | None) -> None:
        await service_of(self).allow(self, self.identity, space_id)
