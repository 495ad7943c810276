"""Replicache V1 request shapes, validation and response encoding. Pure: no I/O."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

SPACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_ID_LEN = 128  # clientID, clientGroupID, profileID, mutator names
MAX_MUTATION_ID = 2**53 - 1
MAX_MUTATIONS = 1000
MAX_DEPTH = 64


class RequestError(Exception):
    """A client mistake or a refusal: becomes `status` with {"error", "message"}."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


def bad(message: str, error: str = "InvalidRequest") -> RequestError:
    return RequestError(400, error, message)


@dataclass(frozen=True)
class Mutation:
    id: int
    name: str
    args: Any
    client_id: str
    timestamp: float


@dataclass(frozen=True)
class PushRequest:
    client_group_id: str
    profile_id: str
    mutations: tuple[Mutation, ...]
    schema_version: str
    user_id: str | None = None  # from the auth token; None when auth is off


@dataclass(frozen=True)
class PullRequest:
    client_group_id: str
    profile_id: str
    cookie: int | None
    schema_version: str
    user_id: str | None = None  # from the auth token; None when auth is off


# Bodies every endpoint answers with 200 (the client acts on them, spec 2.5).
CLIENT_STATE_NOT_FOUND = {"error": "ClientStateNotFound"}


def version_not_supported(kind: str) -> dict[str, str]:
    return {"error": "VersionNotSupported", "versionType": kind}


def check_space_id(value: Any, field: str = "spaceID") -> str:
    if not isinstance(value, str) or not SPACE_ID.fullmatch(value):
        raise bad(f"{field} must match [A-Za-z0-9_-]{{1,64}}", "InvalidSpaceID")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, finite floats, bounded nesting."""
    try:
        value = json.loads(body.decode("utf-8"), parse_float=_finite_float, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad("body is not valid UTF-8", "InvalidJSON") from None
    except (ValueError, RecursionError) as e:
        raise bad(f"body is not valid JSON: {e}", "InvalidJSON") from None
    _check_depth(value)
    if b"\\u" in body:  # only an escape can smuggle in a lone surrogate (not storable)
        _check_strings(value)
    return value


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise bad(f"JSON nested deeper than {MAX_DEPTH}", "InvalidJSON")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise bad("body has a string with a lone UTF-16 surrogate", "InvalidJSON") from None


def json_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad(f"{what} body must be a JSON object")
    return body


def _string(
    body: dict[str, Any], field: str, *, max_len: int = MAX_ID_LEN, empty: bool = False, where: str = ""
) -> str:
    value = body.get(field)
    name = f"{where}.{field}" if where else field
    if not isinstance(value, str):
        raise bad(f"{name} must be a string")
    if len(value) > max_len or (not empty and not value):
        raise bad(f"{name} must be 1..{max_len} characters")
    return value


def _int(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise bad(f"{field} must be an integer in {lo}..{hi}")
    return value


def request_version(body: dict[str, Any], field: str) -> int:
    """pushVersion/pullVersion; checked before the rest since V0 bodies differ."""
    return _int(body.get(field), field, 0, 2**31)


def parse_push(body: Any, max_mutations: int = MAX_MUTATIONS) -> PushRequest:
    body = json_object(body, "push")
    group = _string(body, "clientGroupID")
    raw = body.get("mutations")
    if not isinstance(raw, list):
        raise bad("mutations must be an array")
    if len(raw) > max_mutations:
        raise bad(f"mutations has {len(raw)} items; at most {max_mutations} per push", "TooManyMutations")
    mutations = []
    for i, m in enumerate(raw):
        where = f"mutations[{i}]"
        if not isinstance(m, dict):
            raise bad(f"{where} must be an object")
        timestamp = m.get("timestamp", 0)
        if (
            not isinstance(timestamp, (int, float))
            or isinstance(timestamp, bool)
            or not -1e300 < timestamp < 1e300  # a huge integer would not fit a float
        ):
            raise bad(f"{where}.timestamp must be a number")
        mutations.append(
            Mutation(
                id=_int(m.get("id"), f"{where}.id", 1, MAX_MUTATION_ID),
                name=_string(m, "name", where=where),
                args=m.get("args"),
                client_id=_string(m, "clientID", where=where),
                timestamp=float(timestamp),
            )
        )
    return PushRequest(
        client_group_id=group,
        profile_id=_optional_string(body, "profileID"),
        mutations=tuple(mutations),
        schema_version=_optional_string(body, "schemaVersion"),
    )


def parse_pull(body: Any) -> PullRequest:
    body = json_object(body, "pull")
    cookie = body.get("cookie")
    if cookie is not None:
        # Our cookies are the space version: a non-negative integer.
        cookie = _int(cookie, "cookie", 0, MAX_MUTATION_ID)
    return PullRequest(
        client_group_id=_string(body, "clientGroupID"),
        profile_id=_optional_string(body, "profileID"),
        cookie=cookie,
        schema_version=_optional_string(body, "schemaVersion"),
    )


def _optional_string(body: dict[str, Any], field: str) -> str:
    if body.get(field) is None:
        return ""
    return _string(body, field, empty=True)


def dump_value(value: Any) -> str:
    """The stored form of a client-view value: exact JSON text."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_pull_response(cookie: int, lmids: dict[str, int], ops: list[tuple[str, ...]]) -> bytes:
    """ops: ("clear",), ("put", key, value_json) or ("del", key).

    Values are spliced in as stored JSON text, never parsed and re-encoded.
    """
    parts = []
    for op in ops:
        if op[0] == "put":
            parts.append(f'{{"op":"put","key":{_json(op[1])},"value":{op[2]}}}')
        elif op[0] == "del":
            parts.append(f'{{"op":"del","key":{_json(op[1])}}}')
        else:
            parts.append('{"op":"clear"}')
    text = f'{{"cookie":{cookie:d},"lastMutationIDChanges":{_json(lmids)},"patch":[{",".join(parts)}]}}'
    return text.encode("utf-8")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
