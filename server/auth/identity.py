"""What every source of identity answers (an Identity) and how it refuses (a Refusal).

401: no credentials, or they do not check out (the client should get new ones: Replicache
calls its getAuth). 403: the credentials are fine but not for this space. 503: the source
could not answer (the JWKS was never reached, the hook failed); the client retries.
Each refusal carries a fixed metrics reason (replicache_refused_total{reason}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.protocol import MAX_ID_LEN, RequestError

ANY_SPACE = "*"


@dataclass(frozen=True)
class Identity:
    user_id: str
    spaces: frozenset[str] | None  # None: every space

    def allows(self, space_id: str | None) -> bool:
        """space_id None: a space with a random id (createSpace without one): any-space only."""
        return self.spaces is None or (space_id is not None and space_id in self.spaces)


class Refusal(RequestError):
    def __init__(self, status: int, error: str, message: str, reason: str) -> None:
        super().__init__(status, error, message)
        self.reason = reason


def missing(message: str = "a token is required (Authorization header)") -> Refusal:
    return Refusal(401, "Unauthorized", message, "auth_missing")


def invalid(message: str) -> Refusal:
    return Refusal(401, "Unauthorized", message, "auth_invalid")


def expired(message: str = "token expired") -> Refusal:
    return Refusal(401, "Unauthorized", message, "auth_expired")


def forbidden(space_id: str | None, message: str = "") -> Refusal:
    if not message:
        what = f"use space {space_id!r}"
        if space_id is None:
            what = "create a space with a random id (that takes any-space credentials)"
        message = f"these credentials may not {what}"
    return Refusal(403, "Forbidden", message, "auth_forbidden")


def unavailable(message: str) -> Refusal:
    return Refusal(503, "AuthUnavailable", message, "auth_unavailable")


def user_id(value: Any, where: str) -> str:
    """A user id as the store keeps it: a string of 1..128 characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LEN:
        raise invalid(f"{where} must be a string of 1..{MAX_ID_LEN} characters")
    return value


def space_list(value: Any, where: str) -> frozenset[str] | None:
    """A spaces claim: "*" (None: every space), one id, or a list of ids (possibly with "*")."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise invalid(f'{where} must be "*", a space id or a list of space ids')
    return None if ANY_SPACE in items else frozenset(items)
