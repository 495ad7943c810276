"""What this process remembers between requests, each bounded (least recently used goes).

- Versions: the newest committed version of a space. Only a process that makes every
  commit itself (one process on its own embedded database) may answer pulls from it.
- SpaceStates: what a space held after this process's last commit to it, so the next
  push batch writes without reading first. bump() refuses the write if the head moved.
- Owners: which space and user a client group belongs to (never changes once written).
- Seen: when this process last wrote (or read as fresh) a group's lastSeen, so it is
  written at most once per touch interval, whoever of push and pull sees the group.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

MAX_SPACE_VERSIONS = 100_000
MAX_SPACE_STATES = 256
MAX_STATE_ITEMS = 256  # entries, groups or clients kept of one space
MAX_OWNERS = 100_000


class LRU(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class Versions(LRU[str, int]):
    def __init__(self, size: int = MAX_SPACE_VERSIONS) -> None:
        super().__init__(size)

    def note(self, space_id: str, version: int) -> None:
        """max(): a pull that read an older snapshot must not move it back."""
        known = self.get(space_id)
        self.put(space_id, version if known is None else max(known, version))


@dataclass
class SpaceState:
    """A space at `version` as far as it was read: entries (key -> JSON text, None = absent),
    group documents and client documents ((group, client) -> document). Exact for what it
    holds as long as the head is still at `version`."""

    version: int
    base: int
    entries: dict[str, str | None] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    clients: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def small(self) -> bool:
        return max(len(self.entries), len(self.groups), len(self.clients)) <= MAX_STATE_ITEMS


class SpaceStates(LRU[str, SpaceState]):
    def __init__(self, size: int = MAX_SPACE_STATES) -> None:
        super().__init__(size)

    def take(self, space_id: str) -> SpaceState | None:
        """Taken out while a transaction uses it: an attempt that fails leaves nothing stale."""
        return self.pop(space_id)

    def keep(self, space_id: str, state: SpaceState) -> None:
        if state.small():  # a space this busy is read afresh
            self.put(space_id, state)


@dataclass(frozen=True)
class Owner:
    space_id: str
    user_id: str | None

    def admits(self, space_id: str, user_id: str | None) -> bool:
        """A group is used in the space it was first seen in, and with auth on, by the user
        who made it (a group made with auth off belongs to nobody then)."""
        return self.space_id == space_id and (user_id is None or self.user_id == user_id)


class Owners(LRU[str, Owner]):
    def __init__(self, size: int = MAX_OWNERS) -> None:
        super().__init__(size)


class Seen(LRU[str, float]):
    """group -> time.monotonic() its lastSeen was last known fresh."""

    def __init__(self, size: int = MAX_OWNERS) -> None:
        super().__init__(size)

    def due(self, group_id: str, touch_seconds: float, now: float) -> bool:
        """Is the group's lastSeen to be written (again)?"""
        seen = self.get(group_id)
        return seen is None or now - seen >= touch_seconds
