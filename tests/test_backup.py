"""Backup and restore per space (issue 14.3): the streaming reader, POST import, and
scripts/space_backup.py. The real clients' side is in tests/client/test_node_app.py."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from server.backup import NEWEST_SCHEMA, BackupReader
from server.protocol import RequestError
from server.testing import ROOT, listen
from tests.helpers import database_state, mutation, uid
from tests.test_admin import ADMIN, TOKEN, call
from tests.test_admin_writes import entry, send
from tests.test_scripts import run_script
from tests.test_validation import raw_request

BACKUP = str(ROOT / "scripts" / "space_backup.py")

VALUES = [
    1,
    -1.5e10,
    "é \u2603 \\u \u2028",
    None,
    True,
    [1, {"a": [None]}],
    {"n": 2**53 - 1},
    "x" * 70_000,
    0.1,
]
DOC = {
    "schema": 2,
    "space": {"spaceID": "s", "entries": len(VALUES)},
    "entries": [{"key": f"k/{i}", "version": i + 1, "value": v} for i, v in enumerate(VALUES)],
}


def read(raw: bytes, size: int) -> BackupReader:
    reader = BackupReader()
    for i in range(0, len(raw), size):
        reader.feed(raw[i : i + size])
    reader.finish()
    return reader


def refusal(raw: bytes, size: int = 3) -> str:
    with pytest.raises(RequestError) as e:
        read(raw, size)
    assert e.value.status == 400
    return f"{e.value.error}: {e.value.message}"


@pytest.mark.parametrize("size", [1, 2, 7, 100, 65_536, 1 << 30])
@pytest.mark.parametrize("indent", [None, 2])
def test_reader_reads_an_export_in_any_pieces(size, indent):
    reader = read(json.dumps(DOC, indent=indent, ensure_ascii=bool(indent)).encode(), size)
    assert reader.schema == 2 and reader.count == len(VALUES)
    assert [k for k, _ in reader.entries] == [f"k/{i}" for i in range(len(VALUES))]
    assert [json.loads(v) for _, v in reader.entries] == VALUES
    assert reader.entries[1][1] == "-15000000000.0"  # stored text: compact, as a push writes it
    assert reader.space == DOC["space"]


def test_reader_takes_schema_1_and_refuses_newer_ones():
    old = {"space": {"spaceID": "s", "groups": []}, "entries": [{"key": "count", "version": 3, "value": 3}]}
    reader = read(json.dumps(old).encode(), 5)
    assert reader.schema == 1 and reader.entries == [("count", "3")]
    newer = json.dumps({"schema": NEWEST_SCHEMA + 1, "entries": []}).encode()
    with pytest.raises(RequestError) as e:
        read(newer, 100)
    assert e.value.error == "UnsupportedBackup" and f"schema {NEWEST_SCHEMA + 1}" in e.value.message


@pytest.mark.parametrize(
    "raw, says",
    [
        (b"", "empty body"),
        (b"[]", "expected a JSON object"),
        (b'{"schema": 2}', 'no "entries" list'),
        (b'{"entries": []', "ends early"),
        (b'{"entries": [{"key": "a", "value": 1}', "ends early"),
        (b'{"entries": []} x', "text after the document"),
        (b'{"entries": [}', "not valid JSON"),
        (b'{"entries": [1]}', 'must be an object with "key" and "value"'),
        (b'{"entries": [{"key": "a"}]}', 'must be an object with "key" and "value"'),
        (b'{"entries": [{"key": 1, "value": 1}]}', "keys are strings"),
        (b'{"entries": [{"key": "\\ud800", "value": 1}]}', "lone UTF-16 surrogate"),
        (b'{"entries": [{"key": "' + b"k" * 1025 + b'", "value": 1}]}', "longer than 1024 bytes"),
        (b'{"entries": [{"key": "a", "value": 1}, {"key": "a", "value": 2}]}', "appears twice"),
        (b'{"entries": [], "entries": []}', "appears twice"),
        (b'{"entries": [{"key": "a", "value": NaN}]}', "NaN is not JSON"),
        (b'{"entries": [{"key": "a", "value": 1e999}]}', "Out of range float"),
        (b'{"entries": [{"key": "a", "value": 9007199254740992}]}', "beyond +-(2**53 - 1)"),
        (b'{"entries": [{"key": "a", "value": "\\udc00"}]}', "lone UTF-16 surrogate"),
        (b'{"entries": [{"key": "a", "value": ' + b"[" * 65 + b"]" * 65 + b"}]}", "deeper than 64"),
        (b'{"entries": [{"key": "a", "value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}", "recursion"),
        (b'{"entries": [{"key": "a", "value": "\xff"}]}', "not valid UTF-8"),
        (b'{"schema": "2", "entries": []}', '"schema" must be a positive integer'),
        (b'{"entries": [{"key": "a", "value": tru}]}', "not valid JSON"),
    ],
)
def test_reader_refuses_what_cannot_be_restored(raw, says):
    for size in (3, len(raw) or 1):
        assert says in refusal(raw, size)


def test_reader_refuses_at_once_not_at_the_end():
    # A broken entry early in a long backup is refused as soon as it is read.
    reader = BackupReader()
    with pytest.raises(RequestError):
        reader.feed(b'{"schema": 2, "entries": [{"key": "a", "value": [1,,]}, {"key": "b", "value": 2}, ')
    reader = BackupReader()
    reader.feed(b'{"schema": 2, "entries": [{"key": "a", "value": "' + b"x" * 200_000)  # a long value...
    # ...is tried again once the text after it doubled (so it costs O(its size) in all).
    assert reader.feed(b'"}, ' + b" " * 200_000 + b'{"key": "b", "value": 2}, ') == 2


# ---- POST /admin/api/spaces/<id>/import


async def export(http_client, base_url, space: str) -> dict[str, Any]:
    status, body, _ = await call(http_client, base_url, "GET", f"/admin/api/spaces/{space}/export")
    assert status == 200, body
    return body


async def put(http_client, base_url, space: str, key: str, value: Any) -> int:
    status, body = await send(http_client, base_url, "PUT", entry(space, key), json.dumps(value).encode())
    assert status == 200, body
    return body["version"]


async def restore(http_client, base_url, space: str, backup: Any) -> tuple[int, Any]:
    raw = backup if isinstance(backup, bytes) else json.dumps(backup).encode()
    return await send(http_client, base_url, "POST", f"/admin/api/spaces/{space}/import", raw)


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_import_over_a_space_restores_exactly_and_ends_its_client_groups(
    settings, api, http_client, base_url, store
):
    space = await api.create_space()
    group, client = uid("g-"), uid("c-")
    assert (await api.push(space, group, [mutation(1, client, args=5)])).status == 200
    for i, value in enumerate(VALUES):
        await put(http_client, base_url, space, f"k/{i}", value)
    backup = await export(http_client, base_url, space)

    # More writes after the backup: a new key, a changed one, a removed one.
    await put(http_client, base_url, space, "new", 1)
    await put(http_client, base_url, space, "k/0", "changed")
    status, _ = await send(http_client, base_url, "DELETE", entry(space, "k/1"), None)
    assert status == 200
    assert (await api.push(space, group, [mutation(2, client, args=1)])).status == 200
    cookie = (await api.pull(space, group)).body["cookie"]
    stream = await listen(base_url, space)
    try:
        status, body = await restore(http_client, base_url, space, backup)
        assert status == 200, body
        assert body == {"spaceID": space, "version": cookie + 1, "entries": len(VALUES) + 1, "schema": 2}
        await stream.wait_for("poke")
    finally:
        stream.close()
    assert await api.view(space) == {**{f"k/{i}": v for i, v in enumerate(VALUES)}, "count": 5}
    after = await export(http_client, base_url, space)
    assert [(e["key"], e["value"]) for e in after["entries"]] == [
        (e["key"], e["value"]) for e in backup["entries"]
    ]
    # Its group ends (its lmids cannot go back); any older cookie gets everything anew.
    assert (await api.pull(space, group, cookie)).body == {"error": "ClientStateNotFound"}
    assert (await api.push(space, group, [mutation(3, client)])).body == {"error": "ClientStateNotFound"}
    fresh = await api.pull(space, uid("g-"), cookie)
    assert fresh.body["cookie"] == cookie + 1 and fresh.body["patch"][0] == {"op": "clear"}
    assert len(fresh.body["patch"]) == 1 + len(VALUES) + 1


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_import_into_a_new_id_leaves_the_original_untouched(
    settings, api, http_client, base_url, store
):
    space = await api.create_space()
    await put(http_client, base_url, space, "title", "original")
    backup = await export(http_client, base_url, space)
    before = await export(http_client, base_url, space)
    copy = uid("copy-")
    status, body = await restore(http_client, base_url, copy, backup)
    assert status == 200 and body["spaceID"] == copy and body["entries"] == 1
    assert await api.view(copy) == {"title": "original"}
    await put(http_client, base_url, copy, "title", "the copy's")
    assert await export(http_client, base_url, space) == before
    assert await api.view(space) == {"title": "original"}
    # A deleted space comes back from its backup.
    status, _, _ = await call(http_client, base_url, "DELETE", f"/admin/api/spaces/{space}")
    assert status == 200
    status, body = await restore(http_client, base_url, space, backup)
    assert status == 200 and await api.view(space) == {"title": "original"}


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_import_of_an_older_schema_and_refusals_change_nothing(
    settings, api, http_client, base_url, store
):
    space = await api.create_space()
    await put(http_client, base_url, space, "count", 1)
    before = await database_state(store)
    bad = [
        (json.dumps({"schema": 3, "entries": []}).encode(), 400, "UnsupportedBackup"),
        (
            b'{"schema": 2, "entries": [{"key": "a", "value": 1}, {"key": "a", "value": 2}]}',
            400,
            "InvalidBackup",
        ),
        (b'{"schema": 2, "entries": [{"key": "a", "value": 9007199254740993}]}', 400, "InvalidBackup"),
        (b'{"schema": 2, "entries": [{"key": "a", "value": 1}', 400, "InvalidBackup"),
        (b"", 400, "InvalidBackup"),
    ]
    for raw, status, error in bad:
        got, body = await restore(http_client, base_url, space, raw)
        assert (got, body["error"]) == (status, error), (raw[:60], body)
    got, body = await send(
        http_client,
        base_url,
        "POST",
        f"/admin/api/spaces/{space}/import",
        b'{"entries": []}',
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"},
    )
    assert got == 400 and body["error"] == "UnsupportedContentType"
    got, body = await restore(http_client, base_url, "bad%20id", {"entries": []})
    assert got == 400 and body["error"] == "InvalidSpaceID"
    assert await database_state(store) == before

    # From a server before schema 2: no "schema", a summary with its groups.
    old = {
        "space": {"spaceID": space, "groups": [{"clientGroupID": "g"}]},
        "entries": [{"key": "count", "version": 9, "value": 9}],
    }
    status, body = await restore(http_client, base_url, space, old)
    assert status == 200 and body["schema"] == 1 and body["entries"] == 1
    assert await api.view(space) == {"count": 9}


LIMITED = [{"admin_token": TOKEN, "max_body_bytes": 1000, "max_import_bytes": 20_000}]


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", LIMITED, indirect=True)
async def test_import_has_its_own_body_cap(settings, api, http_client, base_url, http_port, store):
    space = await api.create_space()
    # Over the sync endpoints' cap, under the import cap: accepted.
    backup = {"schema": 2, "entries": [{"key": f"k{i}", "value": "v" * 100} for i in range(50)]}
    status, body = await restore(http_client, base_url, space, backup)
    assert status == 200 and body["entries"] == 50, body
    before = await database_state(store)
    backup["entries"] *= 4
    status, body = await restore(http_client, base_url, space, backup)
    assert status == 413 and body["error"] == "BodyTooLarge"
    # Declared too large: refused from the headers, before any body.
    head = (
        f"POST /admin/api/spaces/{space}/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
    ).encode()
    answer = await raw_request(http_port, head)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"BodyTooLarge" in answer
    # A newer schema is refused as soon as it is read, though the body has not all come.
    head = (
        f"POST /admin/api/spaces/{space}/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 15000\r\n\r\n"
        '{"schema": 99, "entries": ['
    ).encode()
    answer = await raw_request(http_port, head)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"UnsupportedBackup" in answer
    # Without the token nothing is read at all.
    head = head.replace(f"Bearer {TOKEN}".encode(), b"Bearer wrong")
    answer = await raw_request(http_port, head)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert await database_state(store) == before


# ---- scripts/space_backup.py


@pytest.mark.gen_test(timeout=120)
@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_backup_script_exports_and_imports_with_progress(
    settings, api, http_client, base_url, tmp_path, store
):
    space = await api.create_space()
    rng = random.Random(14)
    backup = {
        "schema": 2,
        "entries": [
            {"key": f"todo/{i:05}", "value": {"n": i, "text": "t" * rng.randrange(600, 900)}}
            for i in range(1500)
        ],
    }
    status, body = await restore(http_client, base_url, space, backup)
    assert status == 200, body
    file = tmp_path / "space.json"
    token = ["--admin-token", TOKEN]
    code, out, err = await run_script(BACKUP, "export", "--url", base_url, *token, space, str(file))
    assert code == 0, err
    assert f"exported 1500 entries of space {space} to {file}" in out
    assert "1500/1500" in err  # the progress bar
    assert json.loads(file.read_text())["entries"][7]["value"] == backup["entries"][7]["value"]
    assert not list(tmp_path.glob("*.part"))

    await put(http_client, base_url, space, "todo/00007", "changed after the backup")
    await put(http_client, base_url, space, "extra", 1)
    code, out, err = await run_script(BACKUP, "import", "--url", base_url, *token, space, str(file))
    assert code == 0, err
    assert f"imported 1500 entries into space {space}" in out
    assert "100%" in err
    view = await api.view(space)
    assert len(view) == 1500 and view["todo/00007"] == backup["entries"][7]["value"]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings", ADMIN, indirect=True)
async def test_backup_script_says_what_went_wrong_in_one_line(
    settings, api, http_client, base_url, tmp_path, store
):
    space = await api.create_space()
    file = tmp_path / "b.json"
    for args, says in [
        (["--admin-token", "wrong", space, str(file)], "HTTP 401"),
        (["--admin-token", TOKEN, "never-made", str(file)], "SpaceNotFound"),
    ]:
        code, out, err = await run_script(BACKUP, "export", "--url", base_url, *args)
        assert code == 1 and says in err and err.count("\n") == 1, err
        assert not file.exists() and not list(tmp_path.glob("*.part"))
    before = await database_state(store)
    file.write_text('{"schema": 2, "entries": [{"key": "a", "value": 1}, {"key": "a", "value": 1}]}')
    code, _, err = await run_script(
        BACKUP, "import", "--url", base_url, "--admin-token", TOKEN, space, str(file)
    )
    assert code == 1 and "appears twice" in err and err.count("\n") == 1, err
    code, _, err = await run_script(
        BACKUP, "import", "--url", base_url, "--admin-token", TOKEN, space, str(tmp_path / "none")
    )
    assert code == 1 and "cannot read" in err
    assert await database_state(store) == before
    code, _, err = await run_script(BACKUP, "export", space, str(file))
    assert code == 2 and "no admin token" in err
