"""Server-side mutators: async functions over a transaction, like the client's.

Each gets a `Tx` (get/has/put/delete/scan) and the mutation's args. Raising discards
the mutation's writes; its lastMutationID still advances (see server/store/push.py).
`--mutators MODULE` replaces the built-in MUTATORS with a module's own (load()).
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from server.protocol import MAX_ID_LEN


class Tx(Protocol):
    async def get(self, key: str) -> Any: ...
    async def has(self, key: str) -> bool: ...
    async def put(self, key: str, value: Any) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def scan(self, prefix: str = "") -> list[tuple[str, Any]]: ...


Mutator = Callable[[Tx, Any], Awaitable[None]]


# Beyond this a JavaScript client holds the count as an imprecise double (or Infinity) and
# its own increment would disagree with ours: such a mutation fails instead.
MAX_SAFE = 2**53 - 1


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) <= MAX_SAFE


async def increment(tx: Tx, delta: Any) -> None:
    """count = (count or 0) + delta: the counter tutorial's mutator."""
    if not _is_number(delta):
        raise TypeError(f"increment expects a number within +-(2**53 - 1), got {delta!r}")
    prev = await tx.get("count")
    if prev is not None and not _is_number(prev):
        raise TypeError(f"count holds a non-number: {prev!r}")
    count = (prev or 0) + delta
    if not _is_number(count):
        raise ValueError(f"count {prev!r} + {delta!r} is beyond +-(2**53 - 1)")
    await tx.put("count", count)


MUTATORS: dict[str, Mutator] = {"increment": increment}


def load(module_name: str) -> dict[str, Mutator]:
    """The MUTATORS dict of the module `module_name` (--mutators), or the built-in MUTATORS
    for "". They replace the built-in ones: every mutator can be called by every client
    that can push, so a server runs exactly the ones its app defines (README).

    Any problem stops the start-up: SystemExit with one line, no traceback."""
    if not module_name:
        return MUTATORS
    where = f"--mutators {module_name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name + ".").startswith(e.name + "."):
            missing = f"no module named {e.name!r} (is its directory on PYTHONPATH?)"
            raise SystemExit(f"{where}: {missing}") from None
        raise SystemExit(f"{where}: importing it failed: {_one_line(e)}") from None
    except Exception as e:  # SyntaxError, or anything its top level raises
        raise SystemExit(f"{where}: importing it failed: {_one_line(e)}") from None
    if not hasattr(module, "MUTATORS"):
        raise SystemExit(f"{where}: the module has no MUTATORS (a dict of name -> async function)")
    mutators = module.MUTATORS
    if not isinstance(mutators, dict):
        raise SystemExit(
            f"{where}: MUTATORS must be a dict of name -> async function, got {type(mutators).__name__}"
        )
    for name, mutator in mutators.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_ID_LEN:
            raise SystemExit(
                f"{where}: mutator names are strings of 1..{MAX_ID_LEN} characters, got {name!r}"
            )
        if not _is_async(mutator):
            raise SystemExit(
                f"{where}: MUTATORS[{name!r}] must be an async function (async def name(tx, args)),"
                f" got {mutator!r}"
            )
    return dict(mutators)


def _is_async(value: Any) -> bool:
    # An object whose class has `async def __call__` counts too.
    return inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(type(value).__call__)


def _one_line(error: BaseException) -> str:
    """The error and where it happened, without the traceback."""
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    frames = traceback.extract_tb(error.__traceback__)
    if frames and not isinstance(error, SyntaxError):  # a SyntaxError says where itself
        text += f" ({frames[-1].filename}:{frames[-1].lineno})"
    return text
