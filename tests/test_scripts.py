"""scripts/seed_spaces.py and scripts/bench.py, run as the commands a person would type."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import subprocess
import sys

import pytest

from server.testing import ROOT
from tests.helpers import mutation, uid

SEED = str(ROOT / "scripts" / "seed_spaces.py")
BENCH = str(ROOT / "scripts" / "bench.py")


async def run_script(*args: str) -> tuple[int, str, str]:
    """Run a script without blocking the io_loop that serves the test app."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


def run_sync(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.mark.gen_test(timeout=60)
async def test_seed_over_http_creates_sets_count_and_is_idempotent(api, base_url):
    ids = [uid("s-"), uid("s-")]
    prefix = uid("gen") + "-"
    args = [SEED, "--url", base_url, *ids, "--prefix", prefix, "--number", "3", "--set", "count=5"]
    code, out, err = await run_script(*args)
    assert code == 0, err
    assert "5 spaces: 5 created, 0 existed, 5 seeded, 0 already seeded, 0 failed" in out
    assert f"{base_url}/space/{ids[0]}" in out
    for space in [*ids, f"{prefix}1", f"{prefix}3"]:
        assert await api.view(space) == {"count": 5}

    code, out, err = await run_script(*args)
    assert code == 0, err
    assert "5 spaces: 0 created, 5 existed, 0 seeded, 5 already seeded, 0 failed" in out
    assert await api.view(ids[1]) == {"count": 5}  # not 10


@pytest.mark.gen_test(timeout=60)
async def test_seed_over_http_sets_count_of_a_space_in_use(api, base_url):
    space = await api.create_space(uid("used-"))
    r = await api.push(space, uid("g-"), [mutation(1, uid("c-"), args=3)])
    assert r.status == 200, r.body
    code, out, err = await run_script(SEED, "--url", base_url, space, "--set", "count=10")
    assert code == 0, err
    assert "0 created, 1 existed, 1 seeded" in out
    assert await api.view(space) == {"count": 10}


@pytest.mark.gen_test(timeout=60)
async def test_seed_over_http_refuses_keys_no_mutator_writes_before_sending(api, base_url):
    space = uid("t-")
    code, _, err = await run_script(SEED, "--url", base_url, space, "--set", 'title="x"')
    assert code != 0
    assert "use --direct" in err
    r = await api.post("/api/replicache/spaceExists", {"spaceID": space})
    assert r.body == {"spaceExists": False}


@pytest.mark.gen_test(timeout=60)
async def test_seed_direct_writes_any_json_exactly_once(api, mongo_uri, db_name, tmp_path):
    values = {"count": 2, "nested": [1, {"a": None, "é": "ü"}], "big": 2**53 - 1, "f": 0.1}
    a, b = uid("d-"), uid("d-")
    spec = tmp_path / "spaces.json"
    spec.write_text(json.dumps({a: values, b: {"count": 7}}))
    args = [
        SEED,
        "--direct",
        mongo_uri,
        "--db-name",
        db_name,
        "--from-json",
        str(spec),
        "--set",
        'title="hi"',
    ]
    code, out, err = await run_script(*args)
    assert code == 0, err
    assert "2 spaces: 2 created, 0 existed, 2 seeded" in out
    assert await api.view(a) == {**values, "title": "hi"}
    assert await api.view(b) == {"count": 7, "title": "hi"}

    code, out, err = await run_script(*args)
    assert code == 0, err
    assert "0 created, 2 existed, 0 seeded, 2 already seeded" in out
    # The server's clients still push on top of seeded data.
    r = await api.push(b, uid("g-"), [mutation(1, uid("c-"), args=1)])
    assert r.status == 200, r.body
    assert (await api.view(b))["count"] == 8


@pytest.mark.gen_test(timeout=60)
async def test_seed_progress_bar_for_many_spaces(api, base_url):
    code, out, err = await run_script(SEED, "--url", base_url, "--prefix", uid("p") + "-", "--number", "25")
    assert code == 0, err
    assert "25/25" in err
    assert "25 spaces: 25 created" in out
    assert "... and 20 more" in out


def test_seed_help_and_bad_input():
    helped = run_sync(SEED, "--help")
    assert helped.returncode == 0
    for flag in ("--url", "--direct", "--prefix", "--number", "--from-json", "--set", "--db-name", "--start"):
        assert flag in helped.stdout
    assert "Idempotent" in helped.stdout
    bad = subprocess.run([sys.executable, SEED, "no spaces!"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "bad space id" in bad.stderr
    bad = subprocess.run(
        [sys.executable, SEED, "s", "--set", "k=nope"], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode != 0 and "JSON" in bad.stderr


def test_bench_refuses_a_remote_target():
    run = run_sync(BENCH, "--url", "http://192.0.2.1:8888", "--quick")
    assert run.returncode == 2
    assert "not a loopback address" in run.stderr


def test_bench_quick_runs_every_scenario(tmp_path):
    """The smoke test that keeps the tool working; it checks shapes and correctness, not speed."""
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    run = run_sync(
        BENCH, "--quick", "--procs", "2", "--json", str(out_json), "--plot", str(out_png), timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(out_json.read_text())
    expected = {"push-single", "pull", "push-contention", "idle-capacity", "fan-out", "connect-burst"}
    assert expected <= set(results)

    assert results["push-single"]["n"] == 30 and results["push-single"]["p50_ms"] > 0
    assert results["pull"]["unchanged"]["n"] == 30 and results["pull"]["one-behind"]["n"] == 30
    contention = results["push-contention"]
    for variant in ("one-space", "many-spaces", "one-space-no-group-commit"):
        assert contention[variant]["accepted"] > 0, variant
        assert contention[variant]["non_200"] == 0, contention[variant]
        assert contention[variant]["count_matches_accepted"], variant
    assert contention["group_commit_speedup"] > 0
    for size in ("20", "50"):
        fan = results["fan-out"][size]
        assert fan["opened"] == int(size) and fan["missing"] == 0
        assert fan["n"] == int(size) * fan["pushes"]
    idle = results["idle-capacity"]
    assert idle["opened"]["counts"] == {"ok": 100}
    assert idle["rss_open_kb"] > 0 and idle["rss_per_listener_kb"] is not None
    assert results["connect-burst"]["ok"] == 100 and results["connect-burst"]["reset"] == 0
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for row in ("push-single", "pull (unchanged cookie)", "fan-out (50 listeners)", "connect-burst"):
        assert row in run.stdout
    assert "push-single p50 ms" in run.stdout  # the targets table

    summary = run_sync(BENCH, "--summarize", str(out_json), str(out_json))
    assert summary.returncode == 0, summary.stderr
    p50 = results["push-single"]["p50_ms"]
    line = next(x for x in summary.stdout.splitlines() if x.startswith("push-single p50 ms"))
    assert f"{p50:.2f}" in line and "    2  " in line
    assert "fan-out 1000 listeners p99 ms" in summary.stdout  # a quick run has no L=1000: not measured


def bench_targets() -> list[tuple[str, tuple[str, ...], str, float]]:
    """TARGETS of scripts/_bench_report.py, the one list of the performance targets."""
    spec = importlib.util.spec_from_file_location("_bench_report", ROOT / "scripts" / "_bench_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TARGETS


def test_the_documented_targets_are_bench_targets():
    """Every table of targets in README.md or docs/ (header `| target ... | bound |`) lists
    each of TARGETS once, its row starting with the target's label, with the same bound."""
    targets = {label: (op, bound) for label, _, op, bound in bench_targets()}
    tables = 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        rows: list[str] | None = None
        for line in [*doc.read_text().splitlines(), ""]:
            if re.match(r"\| target\b.*\| bound \|", line):
                rows, tables = [], tables + 1
            elif rows is not None and line.startswith("|"):
                rows.append(line)
            elif rows is not None:
                listed: dict[str, tuple[str, float]] = {}
                for row in rows[1:]:  # after the |---| line
                    name, bound = (cell.strip() for cell in row.strip("|").split("|")[:2])
                    label = max((t for t in targets if name.startswith(t)), key=len, default=None)
                    assert label is not None, f"{doc.name}: {name!r} is not in TARGETS"
                    found = re.match(r"([≤≥]) ([0-9.,]+)", bound)
                    assert found, f"{doc.name}: {name!r} has no bound like '≤ 5 ms': {bound!r}"
                    op = "<=" if found.group(1) == "≤" else ">="
                    listed[label] = (op, float(found.group(2).replace(",", "")))
                    assert listed[label] == targets[label], (
                        f"{doc.name}: {name!r}: {bound} is not {targets[label]}"
                    )
                assert len(listed) == len(rows) - 1, f"{doc.name}: a target is listed twice"
                assert set(listed) == set(targets), f"{doc.name}: not listed: {set(targets) - set(listed)}"
                rows = None
    assert tables, "no table of targets found (header `| target | bound | ...`)"
