"""Running a tests/client/*.mjs script under Node: one way for every Node test."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from server.testing import ROOT


def node_report(script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    """Run `node script args...` from the repository root; it must exit 0 and print one JSON
    report on stdout, which is returned."""
    done = subprocess.run(
        ["node", str(script), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def scenario(report: dict[str, Any], name: str) -> dict[str, Any]:
    """One scenario's part of a report; it must have run to its end."""
    result = report["scenarios"][name]
    assert result["ok"], result.get("error")
    return result
