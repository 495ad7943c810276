"""Server-side writes for trusted backends, under /admin/api/spaces/<id>/ (admin token):

  POST   mutate          {"name", "args"}: run a registered mutator as the server
  PUT    entries/<key>   the JSON body becomes the key's value
  DELETE entries/<key>   remove the key
  POST   import          a backup (the JSON of GET export) replaces the space's entries

Each is one transaction through the store (Store.write, Store.restore_space): the version
moves when something changed and the space's listeners are poked after the commit; the
answer carries the version. Anything refused (auth, bad JSON, a key or value out of our
limits, an unknown mutator or space) is a 4xx JSON error and writes nothing.

Authentication is the admin API's (AdminAPIHandler): checked before any body is read.
"""

from __future__ import annotations

from typing import Any

from tornado.web import stream_request_body

from server.admin.api import AdminAPIHandler
from server.backup import BackupReader
from server.limits import LimitedBody
from server.protocol import (
    RequestError,
    bad,
    check_key,
    check_space_id,
    json_object,
    stored_value,
    value_problem,
)
from server.store import Write


class AdminWriteAPI(LimitedBody, AdminAPIHandler):
    async def prepare(self) -> None:
        await super().prepare()  # the token first, then the body limit
        self.refuse_when_closing()  # shutting down: 503, like the sync endpoints

    async def commit(self, space_id: str, write: Write) -> None:
        self.write_json({"version": await self.store.write(space_id, write)})


@stream_request_body
class MutateAPI(AdminWriteAPI):
    async def post(self, space_id: str) -> None:
        space_id = check_space_id(space_id)
        body = json_object(self.json_body(), "mutate")
        name, args = body.get("name"), body.get("args")
        mutator = self.store.mutators.get(name) if isinstance(name, str) else None
        if mutator is None:
            registered = ", ".join(sorted(self.store.mutators)) or "none"
            raise bad(f"unknown mutator {name!r}; this server has: {registered}", "UnknownMutator")
        problem = value_problem(args)
        if problem:
            raise bad(f"args: {problem}", "InvalidArgs")
        await self.commit(space_id, lambda tx: mutator(tx, args))


@stream_request_body
class EntryAPI(AdminWriteAPI):
    async def put(self, space_id: str, key: str) -> None:
        space_id, key = check_space_id(space_id), entry_key(key)
        value = self.json_body()
        if not self.request.body.strip():
            raise bad("send the value as a JSON body (Content-Type: application/json)", "MissingValue")
        try:
            stored_value(value)
        except ValueError as e:
            raise bad(f"value: {e}", "InvalidValue") from None
        await self.commit(space_id, lambda tx: tx.put(key, value))

    async def delete(self, space_id: str, key: str) -> None:
        space_id, key = check_space_id(space_id), entry_key(key)
        await self.commit(space_id, lambda tx: tx.delete(key))


@stream_request_body
class ImportAPI(AdminWriteAPI):
    """The backup is parsed as it arrives (server/backup.py): memory holds its entries as
    stored text, never the whole document as objects; a bad one is refused at once."""

    async def prepare(self) -> None:
        await super().prepare()
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise bad("Content-Type must be application/json", "UnsupportedContentType")
        self.reader = BackupReader()

    def body_limit(self) -> int:
        return int(self.config.max_import_bytes)

    def take(self, chunk: bytes) -> None:
        try:
            self.reader.feed(chunk)
        except RequestError as e:
            # Tornado stops reading and closes the connection after this response.
            self.send_error(e.status, exc_info=(RequestError, e, None))

    async def post(self, space_id: str) -> None:
        if self._finished:  # refused while it arrived (take), and the whole body came
            return
        space_id = check_space_id(space_id)
        entries = self.reader.finish()
        version = await self.store.restore_space(space_id, entries, create=True)
        self.write_json(
            {"spaceID": space_id, "version": version, "entries": len(entries), "schema": self.reader.schema}
        )


def entry_key(key: str) -> str:
    try:
        return check_key(key)
    except (TypeError, ValueError) as e:
        raise bad(f"key: {e}", "InvalidKey") from None


def routes(deps: dict[str, Any], space: str) -> list[Any]:
    """Any key may contain "/": the rest of the path, percent-decoded, is the key."""
    return [
        (rf"/admin/api/spaces/{space}/mutate", MutateAPI, deps),
        (rf"/admin/api/spaces/{space}/entries/(.*)", EntryAPI, deps),
        (rf"/admin/api/spaces/{space}/import", ImportAPI, deps),
    ]
