"""--auth-hook MODULE:FUNCTION: the app's own check, for session cookies, API keys or
anything else a token source does not cover.

    from server.auth import Refused

    async def check(headers, space_id):      # headers: tornado HTTPHeaders
        user = await my_sessions.user_for(headers.get("Cookie", ""))
        if user is None:
            raise Refused("not signed in")                      # 401
        if space_id is not None and not user.may_use(space_id):
            raise Refused("not your space", status=403)         # 403
        return user.id                                          # 1..128 characters

space_id is None for createSpace, before its body is read; when the body names a space,
the hook is called again with that id. On the poke stream, an `auth=` query parameter
arrives as the Authorization header (EventSource cannot set headers). Anything the hook
raises other than Refused, a wrong return value or no answer within the timeout is a
503 with a JSON error and a logged traceback: the client retries, it is not signed out.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.httputil import HTTPHeaders

from server.auth.identity import Identity, forbidden, invalid, unavailable
from server.protocol import MAX_ID_LEN

log = logging.getLogger(__name__)

Hook = Callable[[HTTPHeaders, "str | None"], Awaitable[Any]]


class Refused(Exception):
    """Raise from an auth hook to refuse: status 401 (who are you?) or 403 (not this space)."""

    def __init__(self, message: str = "", status: int = 401) -> None:
        if status not in (401, 403):
            raise ValueError("Refused takes status 401 or 403")
        super().__init__(message)
        self.message = message
        self.status = status


def load(spec: str) -> Hook:
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"--auth-hook takes MODULE:FUNCTION, not {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"--auth-hook {spec}: {e}") from None
    if not inspect.iscoroutinefunction(target) and not inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 (an object with an async __call__)
    ):
        raise ValueError(f"--auth-hook {spec} must be an async function (headers, space_id) -> user id")
    return target


class HookSource:
    def __init__(self, spec: str, timeout: float = 5.0) -> None:
        self.spec = spec
        self.hook = load(spec)
        self.timeout = timeout

    async def identify(self, headers: HTTPHeaders, space_id: str | None) -> Identity:
        """The hook's user; it has decided about space_id (None: createSpace, any id yet)."""
        try:
            user = await asyncio.wait_for(self.hook(headers, space_id), self.timeout)
        except Refused as e:
            if e.status == 403:
                raise forbidden(space_id, e.message) from None
            raise invalid(e.message or "not signed in") from None
        except TimeoutError:
            log.error("auth hook %s gave no answer within %gs", self.spec, self.timeout)
            raise unavailable("the auth check did not answer; retry later") from None
        except Exception:
            log.exception("auth hook %s failed", self.spec)
            raise unavailable("the auth check failed; retry later") from None
        if not isinstance(user, str) or not 1 <= len(user) <= MAX_ID_LEN:
            log.error("auth hook %s returned a %s, not a user id", self.spec, type(user).__name__)
            raise unavailable("the auth check failed; retry later")
        return Identity(user, frozenset() if space_id is None else frozenset([space_id]))
