"""Tokens: HMAC-SHA256 signed, bound to one space and one user, with an expiry.

Format: ``v1.<payload>.<signature>``, both base64url without padding; the payload is
JSON ``{"sp": spaceID, "sub": userID, "exp": unix seconds}``. The space ``*`` means
any space (an app's own token, e.g. to create spaces with random ids).

An app issues tokens after its own login: ``mint(secret, space_id, user_id)`` in
Python, or ``scripts/mint_token.py`` (same secret as the server's AUTH_SECRET).
Replicache sends its ``auth`` option verbatim as the ``Authorization`` header
(``Bearer `` prefix optional); EventSource cannot set headers, so the poke stream
also takes ``?auth=<token>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from server.protocol import MAX_ID_LEN, SPACE_ID, RequestError

ANY_SPACE = "*"
DEFAULT_TTL_SECONDS = 24 * 3600
MAX_TOKEN_LEN = 2048


@dataclass(frozen=True)
class Claims:
    space_id: str
    user_id: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, signed: str) -> str:
    return _b64(hmac.new(secret.encode(), signed.encode("ascii"), hashlib.sha256).digest())


def mint(
    secret: str,
    space_id: str,
    user_id: str,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    if not secret:
        raise ValueError("no secret: set AUTH_SECRET")
    if space_id != ANY_SPACE and not SPACE_ID.fullmatch(space_id):
        raise ValueError("space id must match [A-Za-z0-9_-]{1,64} or be *")
    if not 1 <= len(user_id) <= MAX_ID_LEN:
        raise ValueError(f"user id must be 1..{MAX_ID_LEN} characters")
    expires = int((time.time() if now is None else now) + ttl_seconds)
    payload = _b64(json.dumps({"sp": space_id, "sub": user_id, "exp": expires}).encode())
    signed = f"v1.{payload}"
    return f"{signed}.{_sign(secret, signed)}"


def unauthorized(message: str) -> RequestError:
    return RequestError(401, "Unauthorized", message)


def verify(secret: str, token: str, space_id: str | None, now: float | None = None) -> Claims:
    """The token's claims if it is genuine, unexpired and for space_id; else 401.

    space_id None (createSpace without an id) accepts only an any-space token."""
    if not token:
        raise unauthorized("a token is required (Authorization header)")
    parts = token.split(".")
    if len(token) > MAX_TOKEN_LEN or len(parts) != 3 or parts[0] != "v1":
        raise unauthorized("malformed token")
    # Constant time: the comparison must not tell how much of a forged signature matched.
    if not hmac.compare_digest(_sign(secret, f"{parts[0]}.{parts[1]}"), parts[2]):
        raise unauthorized("bad token signature")
    try:
        claims: Any = json.loads(_unb64(parts[1]))
    except (ValueError, binascii.Error):
        raise unauthorized("malformed token") from None
    if (
        not isinstance(claims, dict)
        or not isinstance(claims.get("sp"), str)
        or not isinstance(claims.get("sub"), str)
        or not isinstance(claims.get("exp"), int)
    ):
        raise unauthorized("malformed token")
    if claims["exp"] <= (time.time() if now is None else now):
        raise unauthorized("token expired")
    if claims["sp"] != ANY_SPACE and claims["sp"] != space_id:
        raise unauthorized("token is for another space")
    return Claims(claims["sp"], claims["sub"], claims["exp"])


def token_from(value: str) -> str:
    value = value.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value


def authorize(handler: Any, space_id: str | None, *, query: bool = False) -> str | None:
    """The user id of the request's token when auth is on (None when off); 401 otherwise.

    query: also accept ?auth= (the poke stream only: EventSource cannot set headers)."""
    secret = handler.config.auth_secret
    if not secret:
        return None
    raw = handler.request.headers.get("Authorization", "")
    if not raw.strip() and query:
        raw = handler.get_query_argument("auth", "")
    return verify(secret, token_from(raw), space_id).user_id


def page_token(settings: Any, space_id: str, user_id: str, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> str:
    """For the page handler: a token to hand to the Replicache client, or "" when auth is off."""
    if not settings.auth_secret:
        return ""
    return mint(settings.auth_secret, space_id, user_id, ttl_seconds)
