"""GET /healthz (liveness), /readyz (database answers a ping; JWKS keys at hand), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.web
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from server import metrics
from server.auth import service_of
from server.handlers.base import JSONHandler


class OpsHandler(JSONHandler):
    """For probes and scrapers, never for browsers on other sites: no CORS headers."""

    def set_default_headers(self) -> None:
        pass

    def options(self, *args: Any) -> None:
        raise tornado.web.HTTPError(405)


class HealthzHandler(OpsHandler):
    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyzHandler(OpsHandler):
    async def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        if self.lifecycle.closing:
            self._unready("ShuttingDown", "the server is shutting down")
            return
        try:
            await asyncio.wait_for(self.store.ping(), timeout=self.config.ready_timeout)
        except TimeoutError as e:
            metrics.database_error(e)
            self._unready("DatabaseUnavailable", f"no database ping within {self.config.ready_timeout:g}s")
            return
        except Exception as e:  # any failure to ping means not ready
            metrics.database_error(e)
            self._unready("DatabaseUnavailable", f"database ping failed: {type(e).__name__}")
            return
        jwks = service_of(self).jwks
        if jwks is not None and not await jwks.ready():  # no key to check a token with
            self._unready("AuthUnavailable", "the JWKS could not be fetched", {"jwks": jwks.status()})
            return
        self.write_json({"status": "ready", **({} if jwks is None else {"auth": {"jwks": jwks.status()}})})

    def _unready(self, error: str, message: str, auth: dict[str, Any] | None = None) -> None:
        self.error_body = {"error": error, "message": message, **({"auth": auth} if auth else {})}
        self.set_status(503)
        self.write_json(self.error_body)


class MetricsHandler(OpsHandler):
    def get(self) -> None:
        # Prometheus text 0.0.4 by default; OpenMetrics when the scraper asks for it.
        encode, content_type = choose_encoder(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(encode(REGISTRY))
