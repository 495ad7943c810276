"""Keys made in the test (RSA, EC, Ed25519, an HS secret), tokens signed with PyJWT, and
KeyServer: a small loopback HTTP server in a thread that plays the identity provider
(its JWKS at /jwks.json) and the app's backend (fresh tokens at /token)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def hs_secret() -> str:
    return secrets.token_urlsafe(48)


def public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(
    user: str = "alice", spaces: Any = "*", ttl: float = 3600, now: float | None = None, **extra: Any
) -> dict[str, Any]:
    """Claims as a provider sets them; spaces=None leaves the spaces claim out."""
    now = time.time() if now is None else now
    made = {"sub": user, "iat": int(now), "exp": int(now + ttl), **extra}
    if spaces is not None:
        made["spaces"] = spaces
    return made


def sign(key: Any, body: dict[str, Any], alg: str, kid: str | None = None, **headers: Any) -> str:
    return jwt.encode(body, key, algorithm=alg, headers={**({"kid": kid} if kid else {}), **headers})


def jwk(key: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    """The public JWK of a private key (alg None: a JWK without "alg", as some providers publish)."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        made = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        made = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        made = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**made, "kid": kid, "use": "sig", **({"alg": alg} if alg else {})}


@dataclass
class KeyServer:
    """GET /jwks.json: the current key set (counted in .fetches). GET /token?space=&user=&ttl=:
    a token signed with .signing (a (key, alg, kid) triple), as an app's backend hands out."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    signing: tuple[Any, str, str] | None = None
    fetches: int = 0
    tokens: int = 0
    _server: ThreadingHTTPServer | None = None

    def start(self) -> KeyServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/jwks.json":
                    owner.fetches += 1
                    self._send(200, {"keys": owner.keys})
                elif url.path == "/token" and owner.signing is not None:
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    key, alg, kid = owner.signing
                    body = claims(q.get("user", "alice"), [q["space"]], float(q.get("ttl", 3600)))
                    owner.tokens += 1
                    self._send(200, {"auth": sign(key, body, alg, kid)})
                else:
                    self._send(404, {"error": "NotFound"})

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Down: the port then refuses connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> KeyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
