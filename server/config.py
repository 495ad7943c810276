"""One Settings object: every option, its flag, its environment variable and its help."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any

from server.auth import AuthService


def _opt(default: Any, env: str, help: str, secret: bool = False) -> Any:
    """secret: --help never shows its value (a default taken from the env variable)."""
    return field(default=default, metadata={"env": env, "help": help, "secret": secret})


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
        True,
        "GROUP_COMMIT",
        "apply the pushes queued meanwhile together, across spaces, in one transaction"
        " (on mongos: per space)",
    )
    pull_cache: bool = _opt(
        True,
        "PULL_CACHE",
        "answer an unchanged pull from memory when this process makes every commit (one process"
        " on its own embedded database); otherwise every pull reads the database",
    )
    heartbeat_seconds: float = _opt(30.0, "HEARTBEAT_SECONDS", "SSE keep-alive interval")
    auth_secret: str = _opt(
        "",
        "AUTH_SECRET",
        "secret for this server's own v1 tokens; when set, push, pull, poke and createSpace need"
        " a token (scripts/mint_token.py); prefer the env variable to the flag",
        secret=True,
    )
    jwt_secret: str = _opt(
        "",
        "JWT_SECRET",
        "verify standard JWTs signed HS256/384/512 with this secret; prefer the env variable",
        secret=True,
    )
    jwt_public_key: str = _opt(
        "",
        "JWT_PUBLIC_KEY",
        "verify JWTs (RS*, PS*, ES*, EdDSA) with this PEM public key or certificate file",
    )
    jwks_url: str = _opt(
        "", "JWKS_URL", "verify JWTs with the keys of this JSON Web Key Set (your identity provider's)"
    )
    jwt_audience: str = _opt(
        "", "JWT_AUDIENCE", "with JWTs: the aud claim they must carry (unchecked when empty)"
    )
    jwt_issuer: str = _opt(
        "", "JWT_ISSUER", "with JWTs: the iss claim they must carry (unchecked when empty)"
    )
    jwt_spaces_claim: str = _opt(
        "spaces",
        "JWT_SPACES_CLAIM",
        'with JWTs: the claim naming the spaces a token may use ("*", an id or a list)',
    )
    jwt_leeway: float = _opt(30.0, "JWT_LEEWAY", "with JWTs: seconds of clock skew allowed on exp and nbf")
    jwks_timeout: float = _opt(5.0, "JWKS_TIMEOUT", "seconds a JWKS fetch may take")
    jwks_cache_seconds: float = _opt(
        300.0, "JWKS_CACHE_SECONDS", "fetch the JWKS again (in the background) once its keys are this old"
    )
    jwks_refetch_seconds: float = _opt(
        30.0,
        "JWKS_REFETCH_SECONDS",
        "fetch the JWKS for an unknown key id at most once per this many seconds",
    )
    auth_hook: str = _opt(
        "",
        "AUTH_HOOK",
        "MODULE:FUNCTION, an async (headers, space_id) -> user id; raise server.auth.Refused to refuse",
    )
    auth_hook_timeout: float = _opt(5.0, "AUTH_HOOK_TIMEOUT", "seconds the auth hook may take (then 503)")
    public_demo: bool = _opt(
        False,
        "PUBLIC_DEMO",
        "with --auth-secret: the counter pages give anonymous visitors new spaces and tokens (rate-limited)",
    )
    demo_token_ttl: float = _opt(86400.0, "DEMO_TOKEN_TTL", "seconds a public-demo page token stays valid")
    demo_rate: float = _opt(
        1.0, "DEMO_RATE", "public-demo spaces and tokens per second per address (token bucket); 0 = no limit"
    )
    demo_burst: int = _opt(30, "DEMO_BURST", "public-demo spaces and tokens an address may take at once")
    max_body_bytes: int = _opt(5 * 1024 * 1024, "MAX_BODY_BYTES", "largest request body accepted (else 413)")
    max_mutations: int = _opt(
        1000, "MAX_MUTATIONS", "most new mutations applied from one push (the client sends the rest again)"
    )
    push_rate: float = _opt(
        0.0, "PUSH_RATE", "pushes per second allowed per client group of a user (token bucket); 0 = no limit"
    )
    push_burst: int = _opt(
        20, "PUSH_BURST", "pushes a client group may send at once before PUSH_RATE applies"
    )
    push_user_groups: int = _opt(
        4,
        "PUSH_USER_GROUPS",
        "one user, and one client address, may push PUSH_RATE (and PUSH_BURST) times this across all"
        " their client groups, so fresh group ids gain nothing",
    )
    client_ttl_days: float = _opt(
        30.0, "CLIENT_TTL_DAYS", "remove client groups idle this long (they start over); 0 = never"
    )
    max_groups_per_user: int = _opt(
        1000,
        "MAX_GROUPS_PER_USER",
        "with auth: client groups one user may keep; past it their least recently seen start over"
        " (as if expired); 0 = no cap",
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
    admin_token: str = _opt(
        "", "ADMIN_TOKEN", "enables /admin; its bearer token and login password", secret=True
    )
    cookie_secret: str = _opt(
        "", "COOKIE_SECRET", "signs the admin login cookie (default: derived from the token)", secret=True
    )
    header_timeout: float = _opt(
        10.0,
        "HEADER_TIMEOUT",
        "seconds a new connection has to send its first request's headers; 0 = no limit",
    )
    idle_timeout: float = _opt(
        75.0,
        "IDLE_TIMEOUT",
        "seconds a kept-alive connection may wait for its next request (SSE streams are responses:"
        " never idle); 0 = no limit",
    )
    body_timeout: float = _opt(
        60.0,
        "BODY_TIMEOUT",
        "seconds a request body may take to arrive in full, else the connection closes; 0 = no limit",
    )
    max_connections_per_address: int = _opt(
        256,
        "MAX_CONNECTIONS_PER_ADDRESS",
        "open connections one client address (IPv6: one /64) may hold, per process; more are refused"
        " with 429; trusted proxies are exempt; 0 = no cap",
    )
    poke_max_per_address: int = _opt(
        128,
        "POKE_MAX_PER_ADDRESS",
        "SSE poke listeners one client address (IPv6: one /64) may hold, per process; more are refused"
        " with 429; trusted proxies are exempt; 0 = no cap",
    )
    body_buffer_bytes: int = _opt(
        64 * 1024 * 1024,
        "BODY_BUFFER_BYTES",
        "request body bytes this process holds at once for requests being read; more are refused with 503",
    )
    linger_bytes: int = _opt(
        64 * 1024 * 1024,
        "LINGER_BYTES",
        "after an early answer (413, 401, ...) up to this many body bytes are read and dropped so the"
        " client can read the answer; past it the connection is closed",
    )
    trusted_proxies: str = _opt(
        "",
        "TRUSTED_PROXIES",
        "comma-separated addresses or networks (CIDR) of your reverse proxies: X-Forwarded-For,"
        " X-Real-Ip and X-Forwarded-Proto are believed from them only",
    )
    mutators: str = _opt(
        "",
        "MUTATORS",
        "Python module whose MUTATORS dict (name -> async (tx, args)) replaces the built-in"
        " increment (docs/own-app.md)",
    )
    max_import_bytes: int = _opt(
        64 * 1024 * 1024,
        "MAX_IMPORT_BYTES",
        "largest backup accepted by POST /admin/api/spaces/<id>/import (else 413); read as it arrives",
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
        " see docs/operations.md); 0 = never",
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
            epilog="Secrets (AUTH_SECRET, JWT_SECRET, ADMIN_TOKEN, COOKIE_SECRET): prefer the environment"
            " variables to the flags, which other users of the machine can read in the process list.",
        )
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            default = f.default
            if f.metadata["env"] in env:
                default = _convert(type(f.default), env[f.metadata["env"]])
            shown = "set" if f.metadata["secret"] and default else "%(default)s"
            help = f"{f.metadata['help']} (env {f.metadata['env']}; default {shown})"
            if isinstance(f.default, bool):
                parser.add_argument(flag, default=default, help=help, action=argparse.BooleanOptionalAction)
            else:
                parser.add_argument(flag, default=default, help=help, type=type(f.default))
        settings = cls(**vars(parser.parse_args(argv)))
        try:
            AuthService(settings)  # a conflicting choice, a missing key file: say so now
        except ValueError as e:
            parser.error(str(e))
        return settings

    def allowed_origins(self) -> set[str] | None:
        """None means any origin."""
        items = {o.strip() for o in self.cors_origins.split(",") if o.strip()}
        return None if "*" in items else items


def _convert(kind: type, raw: str) -> Any:
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return kind(raw)
