"""One Settings object: every option, its flag, its environment variable and its help."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any


def _opt(default: Any, env: str, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass
class Settings:
    host: str = _opt("127.0.0.1", "HOST", "address to listen on (0.0.0.0 for every interface)")
    port: int = _opt(8888, "PORT", "HTTP port")
    data_dir: str = _opt("./data", "DATA_DIR", "where the embedded database keeps its files")
    mongodb_uri: str = _opt(
        "", "MONGODB_URI", "use this MongoDB (replica set) instead of the embedded database"
    )
    db_name: str = _opt("replicache", "DB_NAME", "MongoDB database name")
    cors_origins: str = _opt("*", "CORS_ORIGINS", "comma-separated origins allowed by CORS, or * for any")
    group_commit: bool = _opt(
        True, "GROUP_COMMIT", "apply pushes queued for a space together in one transaction"
    )
    pull_cache: bool = _opt(
        True,
        "PULL_CACHE",
        "answer unchanged pulls from the space version known in memory"
        " (kept right across processes by the change stream; see README Deployment)",
    )
    heartbeat_seconds: float = _opt(30.0, "HEARTBEAT_SECONDS", "SSE keep-alive interval")
    auth_secret: str = _opt(
        "",
        "AUTH_SECRET",
        "HMAC secret for tokens; when set, push, pull, poke and createSpace need a token"
        " (scripts/mint_token.py); prefer the env variable to the flag",
    )
    max_body_bytes: int = _opt(5 * 1024 * 1024, "MAX_BODY_BYTES", "largest request body accepted (else 413)")
    max_mutations: int = _opt(1000, "MAX_MUTATIONS", "most mutations accepted in one push (else 400)")
    push_rate: float = _opt(
        0.0, "PUSH_RATE", "pushes per second allowed per client group (token bucket); 0 = no limit"
    )
    push_burst: int = _opt(
        20, "PUSH_BURST", "pushes a client group may send at once before PUSH_RATE applies"
    )
    client_ttl_days: float = _opt(
        30.0, "CLIENT_TTL_DAYS", "remove client groups idle this long (they start over); 0 = never"
    )
    gc_interval_seconds: float = _opt(
        3600.0, "GC_INTERVAL_SECONDS", "how often idle client groups are removed"
    )
    listen_backlog: int = _opt(
        1024, "LISTEN_BACKLOG", "pending-connection queue of the listening socket (capped by somaxconn)"
    )
    poke_max_per_space: int = _opt(
        10000, "POKE_MAX_PER_SPACE", "most SSE poke listeners in one space; more are refused with 429"
    )
    poke_max_listeners: int = _opt(
        20000, "POKE_MAX_LISTENERS", "most SSE poke listeners in this process; more are refused with 503"
    )
    poke_buffer_bytes: int = _opt(
        8192, "POKE_BUFFER_BYTES", "unsent bytes an SSE listener may queue before it is dropped as stuck"
    )
    log_level: str = _opt("info", "LOG_LEVEL", "debug, info, warning or error")
    log_format: str = _opt("logfmt", "LOG_FORMAT", "access log line format: logfmt or json")
    ready_timeout: float = _opt(1.0, "READY_TIMEOUT", "seconds /readyz waits for a database ping")
    admin_token: str = _opt("", "ADMIN_TOKEN", "enables /admin; its bearer token and login password")
    cookie_secret: str = _opt(
        "", "COOKIE_SECRET", "signs the admin login cookie (default: derived from the token)"
    )
    embedded_cache_size: str = _opt(
        "128M", "EMBEDDED_CACHE_SIZE", "WiredTiger cache of the embedded database (e.g. 128M, 1G)"
    )
    embedded_oplog_max_entries: int = _opt(
        20000, "EMBEDDED_OPLOG_MAX_ENTRIES", "oplog entries the embedded database keeps (change streams)"
    )
    embedded_oplog_retention_seconds: float = _opt(
        3600.0, "EMBEDDED_OPLOG_RETENTION_SECONDS", "oldest oplog entry the embedded database keeps, seconds"
    )
    embedded_max_rss_mb: float = _opt(
        256.0,
        "EMBEDDED_MAX_RSS_MB",
        "restart the embedded database when its resident memory passes this (it grows ~5 KB per push;"
        " see README); 0 = never",
    )
    embedded_check_seconds: float = _opt(
        10.0, "EMBEDDED_CHECK_SECONDS", "how often the embedded database's memory (and life) is checked"
    )
    processes: int = _opt(
        1, "PROCESSES", "worker processes sharing the port (0: one per CPU); more than 1 needs change streams"
    )

    @classmethod
    def from_args(cls, argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
        """Flags win over environment variables, which win over defaults."""
        env = os.environ if env is None else env
        parser = argparse.ArgumentParser(
            prog="python -m server",
            description="A Replicache sync server: push, pull and SSE pokes per space, on MongoDB.",
        )
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            default = f.default
            if f.metadata["env"] in env:
                default = _convert(type(f.default), env[f.metadata["env"]])
            help = f"{f.metadata['help']} (env {f.metadata['env']}; default %(default)s)"
            if isinstance(f.default, bool):
                parser.add_argument(flag, default=default, help=help, action=argparse.BooleanOptionalAction)
            else:
                parser.add_argument(flag, default=default, help=help, type=type(f.default))
        return cls(**vars(parser.parse_args(argv)))

    def allowed_origins(self) -> set[str] | None:
        """None means any origin."""
        items = {o.strip() for o in self.cors_origins.split(",") if o.strip()}
        return None if "*" in items else items


def _convert(kind: type, raw: str) -> Any:
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return kind(raw)
