"""docs/testing.md: every item of the conformance checklist (shared/replicache-protocol.md
§9, 45 items) names tests, and every test it names exists."""

from __future__ import annotations

import re

from server.testing import ROOT

ITEMS = 45


def checklist_rows() -> dict[int, str]:
    readme = (ROOT / "docs" / "testing.md").read_text()
    section = readme[readme.index("**Conformance checklist**") :]
    rows = {}
    for line in section.splitlines()[1:]:
        if line.startswith("| ") and (m := re.match(r"\| (\d+) \| (.*) \|$", line)):
            rows[int(m.group(1))] = m.group(2)
        elif rows and not line.startswith("|"):
            break
    return rows


def test_every_checklist_item_names_tests_that_exist():
    rows = checklist_rows()
    assert sorted(rows) == list(range(1, ITEMS + 1))
    for item, cell in rows.items():
        named = re.findall(r"`([\w/]+\.py)::(test_\w+)`", cell)
        assert named, f"item {item} names no test: {cell}"
        for path, name in named:
            source = (ROOT / "tests" / path).read_text()
            assert re.search(rf"^(async )?def {name}\(", source, re.M), f"item {item}: no {path}::{name}"


def test_the_guarantees_table_names_tests_that_exist():
    readme = (ROOT / "docs" / "testing.md").read_text()
    section = readme[readme.index("**Guarantees and the tests that fail without them.**") :]
    section = section[: section.index("**Conformance checklist**")]
    named = re.findall(r"`([\w/]+\.py)::(test_\w+)`", section)
    assert len(named) >= 8
    for path, name in named:
        source = (ROOT / "tests" / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"no {path}::{name}"
