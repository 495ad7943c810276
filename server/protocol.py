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
MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript reads a larger integer as an imprecise double
MAX_MUTATIONS = 1000
MAX_CLIENTS_PER_PUSH = 100  # distinct clientIDs applied from one push (a real group has a few tabs)
MAX_DEPTH = 64
MAX_VALUE_BYTES = 1 << 20  # one argument or stored value (Replicache advises values under 1 MB)
MAX_KEY_BYTES = 1024  # an entry key (it is part of a database index key)


class RequestError(Exception):
    """A client mistake or a refusal: becomes `status` with {"error", "message"}, and
    `headers` on the answer (Retry-After)."""

    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}

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
    problem: str | None = None  # args out of our limits: the mutation fails alone (lmid advances)


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
    foreign_cookie: bool = False  # a cookie this server never issues: the client must start over


# Bodies every endpoint answers with 200 (the client acts on them, spec 2.5).
CLIENT_STATE_NOT_FOUND = {"error": "ClientStateNotFound"}


def version_not_supported(kind: str) -> dict[str, str]:
    return {"error": "VersionNotSupported", "versionType": kind}


def space_not_found(space_id: str) -> RequestError:
    return RequestError(404, "SpaceNotFound", f"space {space_id!r} does not exist")


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


def parse_json(body: bytes, *, strict: bool = True) -> Any:
    """JSON: UTF-8, no NaN/Infinity, finite floats. `strict` also applies value_problem()
    to the whole body (depth, lone surrogates); a push checks each mutation's args instead,
    so one bad mutation fails alone."""
    try:
        value = json.loads(body.decode("utf-8"), parse_float=_finite_float, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad("body is not valid UTF-8", "InvalidJSON") from None
    except (ValueError, RecursionError) as e:
        raise bad(f"body is not valid JSON: {e}", "InvalidJSON") from None
    if strict:
        problem = _shape_problem(value, check_strings=b"\\u" in body)
        if problem:
            raise bad(f"body: {problem}", "InvalidJSON")
    return value


def value_problem(value: Any) -> str | None:
    """Why a JSON value cannot be stored and read back exactly by every client, or None:
    nesting deeper than MAX_DEPTH, a lone UTF-16 surrogate (not storable as UTF-8), an
    integer beyond +-2**53-1 (JavaScript reads it as an imprecise double), or more than
    MAX_VALUE_BYTES of JSON."""
    problem = _shape_problem(value, check_strings=True, check_integers=True)
    if problem is None and _too_large(value):
        problem = f"value is larger than {MAX_VALUE_BYTES} bytes of JSON"
    return problem


def _shape_problem(value: Any, *, check_strings: bool, check_integers: bool = False) -> str | None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"JSON nested deeper than {MAX_DEPTH}"
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            if check_strings:
                stack.extend((k, depth) for k in item)
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            if check_strings and not _encodable(item):
                return "a string with a lone UTF-16 surrogate"
        elif check_integers and isinstance(item, int) and not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
            return "an integer beyond +-(2**53 - 1)"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _too_large(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) * 4 > MAX_VALUE_BYTES and len(dump_value(value).encode()) > MAX_VALUE_BYTES
    if not isinstance(value, (dict, list)):
        return False
    return len(dump_value(value).encode()) > MAX_VALUE_BYTES


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


def parse_push(body: Any, max_clients: int = MAX_CLIENTS_PER_PUSH) -> PushRequest:
    """Early exit: only the mutations of the first max_clients clients are kept (the store
    applies at most max_mutations new ones). The real client sends every pending mutation
    in each push with no cap, and sends the rest again next time, so a refusal would stop
    it syncing for good."""
    body = push_body(body)
    group = _string(body, "clientGroupID")
    raw = body.get("mutations")
    if not isinstance(raw, list):
        raise bad("mutations must be an array")
    mutations: list[Mutation] = []
    clients: set[str] = set()
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
        mutation = Mutation(
            id=_int(m.get("id"), f"{where}.id", 1, MAX_MUTATION_ID),
            name=_string(m, "name", where=where),
            args=m.get("args"),
            client_id=_string(m, "clientID", where=where),
            timestamp=float(timestamp),
            problem=value_problem(m.get("args")),
        )
        if mutation.client_id not in clients:
            if len(clients) == max_clients:
                break
            clients.add(mutation.client_id)
        mutations.append(mutation)
    return PushRequest(
        client_group_id=group,
        profile_id=_optional_string(body, "profileID"),
        mutations=tuple(mutations),
        schema_version=_optional_string(body, "schemaVersion"),
    )


def push_body(body: Any) -> dict[str, Any]:
    """A push body parsed with parse_json(strict=False): everything but the mutations' args
    held to the strict rules (a lone surrogate in an id could not be stored); the args are
    checked one by one in parse_push, so one bad mutation fails alone."""
    envelope = body
    if isinstance(body, dict) and isinstance(body.get("mutations"), list):
        mutations = [
            {k: v for k, v in m.items() if k != "args"} if isinstance(m, dict) else m
            for m in body["mutations"]
        ]
        envelope = {**body, "mutations": mutations}
    problem = _shape_problem(envelope, check_strings=True)
    if problem:
        raise bad(f"body: {problem}", "InvalidJSON")
    return json_object(body, "push")


def parse_pull(body: Any) -> PullRequest:
    body = json_object(body, "pull")
    cookie, foreign = body.get("cookie"), False
    if cookie is not None:
        # Our cookies are the space version, a non-negative integer. Any other cookie (a
        # string, an {order} object, a fraction...) was issued by some other backend to a
        # local store under the same name: the client must start over (ClientStateNotFound).
        try:
            cookie = _int(cookie, "cookie", 0, MAX_MUTATION_ID)
        except RequestError:
            cookie, foreign = None, True
    return PullRequest(
        client_group_id=_string(body, "clientGroupID"),
        profile_id=_optional_string(body, "profileID"),
        cookie=cookie,
        schema_version=_optional_string(body, "schemaVersion"),
        foreign_cookie=foreign,
    )


def _optional_string(body: dict[str, Any], field: str) -> str:
    if body.get(field) is None:
        return ""
    return _string(body, field, empty=True)


def dump_value(value: Any) -> str:
    """The stored form of a client-view value: exact JSON text."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def stored_value(value: Any) -> str:
    """dump_value() of a value a mutator or the admin API writes; ValueError when it is out
    of our limits (see value_problem)."""
    problem = value_problem(value)
    if problem:
        raise ValueError(problem)
    return dump_value(value)


def check_key(key: Any) -> str:
    """An entry key: a string that can be stored (no lone surrogate), at most MAX_KEY_BYTES."""
    if not isinstance(key, str):
        raise TypeError(f"keys are strings, got {type(key).__name__}")
    if not _encodable(key):
        raise ValueError("key has a lone UTF-16 surrogate")
    if len(key) > MAX_KEY_BYTES // 4 and len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"key is longer than {MAX_KEY_BYTES} bytes")
    return key


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
