"""Server-side mutators: async functions over a transaction, like the client's.

Each gets a `Tx` (get/has/put/delete/scan) and the mutation's args. Raising discards
the mutation's writes; its lastMutationID still advances (see store.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol


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
