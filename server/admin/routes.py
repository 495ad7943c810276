"""The admin's routes (make_app adds them when Settings.admin_token is set)."""

from __future__ import annotations

from typing import Any

from server.admin import api, pages, writes
from server.admin.base import COOKIE_DAYS
from server.admin.lockout import FailedAttempts
from server.admin.sessions import AdminSessions

SPACE = r"([^/]+)"


def admin_routes(deps: dict[str, Any]) -> list[Any]:
    """One lockout and one session store for every admin handler of the application."""
    sessions = AdminSessions(deps["store"], COOKIE_DAYS * 86400)
    deps = {**deps, "attempts": FailedAttempts(), "sessions": sessions}
    return [*pages.routes(deps, SPACE), *api.routes(deps, SPACE), *writes.routes(deps, SPACE)]
