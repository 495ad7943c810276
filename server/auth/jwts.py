"""Standard JWTs, verified with PyJWT: the tokens an identity provider (Auth0, Clerk,
Supabase, Firebase, Keycloak) or an app's own backend already issues.

One source of keys at a time: a shared secret (HS256/384/512), one PEM public key (RSA,
EC, Ed25519) or a JWKS (server/auth/jwks.py). The token's `alg` must be one its key can
verify, so an HS256 token "signed" with a public key, or `alg: none`, is refused before
PyJWT sees it. `sub` is the user; a spaces claim (default `spaces`: "*", one id or a list)
says which spaces the token may use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from server.auth.identity import Identity, expired, invalid, missing, space_list, user_id

HMAC_ALGS = ("HS256", "HS384", "HS512")
RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}
JWK_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
MAX_JWT_LEN = 16 * 1024  # provider tokens with many claims run to a few KB


class Keys(Protocol):
    async def key(self, kid: str | None, alg: str) -> Any:
        """The key to verify a token with this header; a Refusal when there is none."""


def mismatch(alg: str, allowed: tuple[str, ...]) -> Exception:
    return invalid(f"algorithm {alg} does not match the server's key, which takes {', '.join(allowed)}")


def algorithms_for_key(key: Any) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGS
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_CURVES:
        return (EC_CURVES[key.curve.name],)
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return ("EdDSA",)
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def algorithms_for_jwk(jwk: dict[str, Any]) -> tuple[str, ...]:
    """A JWK's own `alg` if it names one, else every algorithm its key type can verify."""
    if isinstance(jwk.get("alg"), str):
        return (jwk["alg"],)
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        return RSA_ALGS
    if kty == "EC" and crv in JWK_CURVES:
        return (JWK_CURVES[crv],)
    if kty == "OKP" and crv in ("Ed25519", "Ed448"):
        return ("EdDSA",)
    return ()  # "oct" (shared secrets) never comes from a JWKS: that would be a public secret


def load_public_key(value: str) -> Any:
    """--jwt-public-key: a PEM file, or the PEM text itself (handy in an env variable).
    A public key or a certificate; a private key is refused, it has no business here."""
    text = value if value.lstrip().startswith("-----BEGIN") else Path(value).read_text()
    if "PRIVATE KEY-----" in text:
        raise ValueError("--jwt-public-key holds a private key: give the server the public key only")
    data = text.encode()
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise ValueError("--jwt-public-key is not a PEM public key or certificate") from None
    algorithms_for_key(key)
    return key


class StaticKey:
    """One key for every token: the shared secret or the PEM public key."""

    def __init__(self, key: Any, algorithms: tuple[str, ...]) -> None:
        self._key = key
        self.algorithms = algorithms

    async def key(self, kid: str | None, alg: str) -> Any:
        if alg not in self.algorithms:
            raise mismatch(alg, self.algorithms)
        return self._key


class JWTSource:
    def __init__(
        self,
        keys: Keys,
        *,
        audience: str = "",
        issuer: str = "",
        spaces_claim: str = "spaces",
        leeway: float = 30.0,
    ) -> None:
        self.keys = keys
        self.audience = audience or None
        self.issuer = issuer or None
        self.spaces_claim = spaces_claim
        self.leeway = leeway

    async def identify(self, token: str) -> Identity:
        if not token:
            raise missing()
        if len(token) > MAX_JWT_LEN:
            raise invalid("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or not alg:
            raise invalid("token names no algorithm (alg)")
        if alg.lower() == "none":
            raise invalid("unsigned tokens (alg none) are refused")
        if kid is not None and not isinstance(kid, str):
            raise invalid("malformed key id (kid)")
        claims = self._decode(token, await self.keys.key(kid, alg), alg)
        spaces = frozenset[str]()  # no spaces claim: the user is known, no space is allowed
        if self.spaces_claim in claims:
            spaces = space_list(claims[self.spaces_claim], f"the {self.spaces_claim!r} claim")
        return Identity(user_id(claims["sub"], "the sub claim"), spaces)

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise expired() from None
        except jwt.ImmatureSignatureError:
            raise invalid("token not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidSignatureError:
            raise invalid("bad token signature") from None
        except jwt.InvalidAudienceError:
            raise invalid("token is for another audience (aud)") from None
        except jwt.InvalidIssuerError:
            raise invalid("token is from another issuer (iss)") from None
        except jwt.MissingRequiredClaimError as e:
            raise invalid(f"token has no {e.claim} claim") from None
        except jwt.PyJWTError:
            raise invalid("invalid token") from None
