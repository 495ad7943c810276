"""--public-demo: the bundled counter pages hand anonymous visitors new spaces and tokens.

Off unless the operator asks: with auth on and no --public-demo, nothing gives a token or
a space to someone who has none. On, each visitor is a user (a random id in a cookie that
outlives browser restarts, so the client group it stored stays its own) and may get a
token for an existing space's page (`<meta>` and GET /space/<id>/auth) and new spaces
from GET /. Both are rate-limited per address (429) and counted in /metrics.
"""

from __future__ import annotations

import math
import re
import secrets
from typing import Any

from server import metrics
from server.auth.tokens import mint
from server.protocol import RequestError
from server.rate_limiter import RateLimiter

USER_COOKIE = "counter_user"
USER_ID = re.compile(r"[A-Za-z0-9_-]{16}")
# A year (browsers cap cookies at 400 days): a session cookie ended with the browser, and
# the page's stored client group, bound to the old user, was refused from then on.
USER_COOKIE_DAYS = 365


def page_user(handler: Any) -> str:
    """The browser's user id: a random id kept in a cookie. The demo has no sign-in, so
    every visitor is a user; a real app takes the id from its own sign-in."""
    user = handler.get_cookie(USER_COOKIE)
    if user is None or not USER_ID.fullmatch(user):
        user = secrets.token_urlsafe(12)
    # Set on every token, so the year counts from the last visit.
    handler.set_cookie(
        USER_COOKIE,
        user,
        httponly=True,
        samesite="Lax",  # Strict would drop it on a shared link opened from another site
        secure=handler.request.protocol == "https",
        path="/",
        expires_days=USER_COOKIE_DAYS,
    )
    return user


class PublicDemo:
    def __init__(self, settings: Any) -> None:
        self.secret = settings.auth_secret
        self.ttl = settings.demo_token_ttl
        rate = settings.demo_rate
        self.limiter = RateLimiter(rate, settings.demo_burst) if rate > 0 else None

    def admit(self, handler: Any, what: str) -> None:
        """One more space or token for this address, or 429."""
        wait = 0.0 if self.limiter is None else self.limiter.take(handler.request.remote_ip or "")
        if wait:
            metrics.connection_refused("public_demo_rate")
            raise RequestError(
                429,
                "RateLimited",
                f"too many new spaces or tokens from this address; retry in {math.ceil(wait)}s",
            )
        metrics.public_demo(what)

    def token(self, handler: Any, space_id: str) -> str:
        self.admit(handler, "token")
        return mint(self.secret, space_id, page_user(handler), self.ttl)
