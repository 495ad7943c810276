"""The README's Configuration table is the Settings object, row for row: one option added,
renamed or re-documented in server/config.py and not in the README fails here."""

from __future__ import annotations

from dataclasses import fields

from server.config import Settings
from server.testing import ROOT


def config_rows() -> list[str]:
    """Each Settings field as its README table row."""
    rows = []
    for f in fields(Settings):
        name = f.name.replace("_", "-")
        if isinstance(f.default, bool):
            flag, default = f"`--[no-]{name}`", "on" if f.default else "off"
        else:
            flag, default = f"`--{name}`", f"`{f.default}`" if f.default != "" else "(empty)"
        rows.append(f"| {flag} | `{f.metadata['env']}` | {default} | {f.metadata['help']} |")
    return rows


def readme_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `--")]


def test_the_configuration_table_is_the_settings():
    assert readme_rows() == config_rows()
