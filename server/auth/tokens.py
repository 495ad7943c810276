"""This server's own tokens (--auth-secret): HMAC-SHA256 signed, bound to one space and
one user, with an expiry.

Format: ``v1.<payload>.<signature>``, both base64url without padding; the payload is
JSON ``{"sp": spaceID, "sub": userID, "exp": unix seconds}``. The space ``*`` means
any space (an app's own token, e.g. to create spaces with random ids).

An app issues tokens after its own login: ``mint(secret, space_id, user_id)`` in
Python, or ``scripts/mint_token.py`` (same secret as the server's AUTH_SECRET).
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

from server.auth.identity import ANY_SPACE, Identity, expired, invalid, missing
from server.protocol import MAX_ID_LEN, SPACE_ID

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


def verify(secret: str, token: str, now: float | None = None) -> Claims:
    """The token's claims if it is genuine and unexpired; else a 401 Refusal.
    Which spaces it may use is the caller's check (Identity.allows: 403)."""
    if not token:
        raise missing()
    parts = token.split(".")
    if len(token) > MAX_TOKEN_LEN or len(parts) != 3 or parts[0] != "v1":
        raise invalid("malformed token")
    # Constant time: the comparison must not tell how much of a forged signature matched.
    if not hmac.compare_digest(_sign(secret, f"{parts[0]}.{parts[1]}"), parts[2]):
        raise invalid("bad token signature")
    try:
        claims: Any = json.loads(_unb64(parts[1]))
    except (ValueError, binascii.Error):
        raise invalid("malformed token") from None
    if (
        not isinstance(claims, dict)
        or not isinstance(claims.get("sp"), str)
        or not isinstance(claims.get("sub"), str)
        or not isinstance(claims.get("exp"), int)
    ):
        raise invalid("malformed token")
    if claims["exp"] <= (time.time() if now is None else now):
        raise expired()
    return Claims(claims["sp"], claims["sub"], claims["exp"])


class V1Source:
    """--auth-secret: this server's own tokens."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def identify(self, token: str) -> Identity:
        claims = verify(self.secret, token)
        return Identity(
            claims.user_id, None if claims.space_id == ANY_SPACE else frozenset([claims.space_id])
        )
