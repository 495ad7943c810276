"""A space's backup (the admin export), read as its bytes arrive. Pure: no I/O.

The export is {"schema": N, "space": {...}, "entries": [{"key", "version", "value"}, ...]}.
BackupReader parses it member by member and entry by entry, so an import never holds the
whole document as Python objects: only each entry's key and its value as stored JSON
text, checked like any value a mutator writes (protocol.stored_value, check_key).

Schema: the export's "schema" is the database schema of the server that wrote it. An
export without one comes from schema 1, whose entries list is the same; a newer schema
than NEWEST_SCHEMA is refused before the rest of the body is read.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from server.protocol import RequestError, bad, check_key, stored_value

NEWEST_SCHEMA = 2  # the newest export this server reads: keep in step with the export's "schema"
WHITESPACE = re.compile(r"[ \t\n\r]*")
# A value still incomplete after this many characters is refused: an entry's value is at
# most 1 MB of JSON (protocol.MAX_VALUE_BYTES), which escapes (\uXXXX) make up to 6 MB.
MAX_PENDING_CHARS = 8 << 20


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


class _NeedMore(Exception):
    """The text so far ends inside the next item: wait for more."""


def invalid(message: str) -> RequestError:
    return bad(f"backup: {message}", "InvalidBackup")


class BackupReader:
    """feed() the body's bytes in pieces, then finish(). Errors are RequestError (400).
    keep=False checks and counts the entries without keeping them (scripts/space_backup.py)."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._pos = 0  # where parsing continues in _text
        self._offset = 0  # characters dropped from the front of _text so far
        self._state = "start"
        self._member: str | None = None
        self._retry_at = 0  # len(_text) at which an incomplete item is tried again
        self.schema: int | None = None
        self.space: dict[str, Any] = {}  # the summary at export time (not restored)
        self.count = 0  # entries read
        self.entries: list[tuple[str, str]] = []  # (key, JSON text), in backup order
        self._keys: set[str] = set()
        self._seen: set[str] = set()  # top-level members read

    def feed(self, data: bytes) -> int:
        """Parse what `data` completes; returns how many entries it completed."""
        try:
            self._text += self._utf8.decode(data)
        except UnicodeDecodeError:
            raise invalid("not valid UTF-8") from None
        return self._parse(final=False)

    def finish(self) -> list[tuple[str, str]]:
        """The entries, once the whole document was read (else 400)."""
        try:
            self._text += self._utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            raise invalid("not valid UTF-8") from None
        if self._state == "start" and not self._text.strip():
            raise invalid("empty body: send the JSON of GET /admin/api/spaces/<id>/export")
        self._parse(final=True)
        if self._state != "end":
            raise invalid("the document ends early")
        if "entries" not in self._seen:
            raise invalid('no "entries" list: is this an export of GET /admin/api/spaces/<id>/export?')
        if self.schema is None:
            self.schema = 1  # written before exports carried a schema; same entries list
        return self.entries

    def _parse(self, final: bool) -> int:
        before = self.count
        if not final and len(self._text) < self._retry_at:
            return 0
        while True:
            start = self._pos
            try:
                if not self._step(final):
                    break
            except _NeedMore:
                self._pos = start  # a step moves on whole or not at all
                if final:
                    raise invalid(f"the document ends early, at character {self._offset + start}") from None
                pending = len(self._text) - start
                if pending > MAX_PENDING_CHARS:
                    raise invalid(
                        f"an item at character {self._offset + start} is over {MAX_PENDING_CHARS} characters"
                    ) from None
                # Try again once the pending text doubled: a long value costs O(its size) in all.
                # (_text is cut to start at the pending item below.)
                self._retry_at = pending + max(pending, 1 << 16)
                break
        self._offset += self._pos
        self._text, self._pos = self._text[self._pos :], 0
        return self.count - before

    def _step(self, final: bool) -> bool:
        """Read one token or value; False when the document is complete."""
        state = self._state
        if state == "end":
            if self._skip() < len(self._text):
                raise invalid(f"text after the document, at character {self._offset + self._pos}")
            return False
        if state == "start":
            self._expect("{", "a JSON object")
            self._state = "first-member"
        elif state in ("first-member", "next-member"):
            char = self._peek()
            if char == "}":
                self._pos += 1
                self._state = "end"
            elif state == "next-member":
                self._expect(",", '"," or "}"')
                self._state = "member"
            else:
                self._state = "member"
        elif state == "member":
            self._skip()
            name = self._value(final)
            if not isinstance(name, str):
                raise invalid(f"a member name, at character {self._offset + self._pos}, is not a string")
            if name in self._seen:
                raise invalid(f"{name!r} appears twice")
            self._expect(":", '":"')
            self._seen.add(name)
            self._member = name
            self._state = "entries-open" if name == "entries" else "value"
        elif state == "value":
            self._skip()
            self._top_member(self._member, self._value(final))
            self._state = "next-member"
        elif state == "entries-open":
            self._expect("[", 'the "entries" list')
            self._state = "first-entry"
        elif state in ("first-entry", "next-entry"):
            char = self._peek()
            if char == "]":
                self._pos += 1
                self._state = "next-member"
            elif state == "next-entry":
                self._expect(",", '"," or "]"')
                self._state = "entry"
            else:
                self._state = "entry"
        elif state == "entry":
            self._skip()
            self._entry(self._value(final))
            self._state = "next-entry"
        return True

    def _skip(self) -> int:
        match = WHITESPACE.match(self._text, self._pos)
        assert match is not None
        self._pos = match.end()
        return self._pos

    def _peek(self) -> str:
        if self._skip() >= len(self._text):
            raise _NeedMore
        return self._text[self._pos]

    def _expect(self, char: str, what: str) -> None:
        if self._peek() != char:
            raise invalid(f"expected {what} at character {self._offset + self._pos}")
        self._pos += 1

    def _value(self, final: bool) -> Any:
        """The JSON value at _pos. One that reaches the end of the text so far may go on
        (a number: 12 of 123) and waits for more, unless the text is final."""
        if self._pos >= len(self._text):
            raise _NeedMore
        try:
            value, end = _DECODER.raw_decode(self._text, self._pos)
        except json.JSONDecodeError as e:
            # Cut short by the end of the text so far (a string, or a number, literal or
            # escape within its last few characters), it may still go on.
            cut = e.msg.startswith("Unterminated string") or e.pos >= len(self._text) - 8
            if final or not cut:
                raise invalid(f"not valid JSON at character {self._offset + e.pos}: {e.msg}") from None
            raise _NeedMore from None
        except (ValueError, RecursionError) as e:  # NaN, a 5000-digit integer, deep nesting
            raise invalid(f"not valid JSON at character {self._offset + self._pos}: {e}") from None
        if end >= len(self._text) and not final:
            raise _NeedMore
        self._pos = end
        return value

    def _top_member(self, name: str | None, value: Any) -> None:
        if name == "space" and isinstance(value, dict):
            self.space = value
        if name != "schema":
            return  # anything else: not restored
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise invalid(f'"schema" must be a positive integer, got {json.dumps(value)[:50]}')
        if value > NEWEST_SCHEMA:
            raise RequestError(
                400,
                "UnsupportedBackup",
                f"this backup has schema {value}, newer than this server reads (1..{NEWEST_SCHEMA});"
                " import it into the server version that wrote it, or a newer one",
            )
        self.schema = value

    def _entry(self, row: Any) -> None:
        where = f"entries[{self.count}]"
        if not isinstance(row, dict) or "key" not in row or "value" not in row:
            raise invalid(f'{where} must be an object with "key" and "value"')
        try:
            key = check_key(row["key"])
        except (TypeError, ValueError) as e:
            raise invalid(f"{where}.key: {e}") from None
        if key in self._keys:
            raise invalid(f"{where}.key {key!r} appears twice")
        try:
            text = stored_value(row["value"])
        except ValueError as e:
            raise invalid(f"{where}.value (key {key!r}): {e}") from None
        self._keys.add(key)
        self.count += 1
        if self.keep:
            self.entries.append((key, text))
