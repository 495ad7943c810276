"""Numbers and pictures for scripts/bench.py: latency summaries (server.testing.percentile),
table rows, the plot, and the targets (TARGETS, the one list of them)."""

from __future__ import annotations

import statistics
from typing import Any

from server.testing import percentile

COLUMNS = ("scenario", "n", "rate/s", "p50 ms", "p99 ms", "max ms", "notes")
WIDTHS = (52, 7, 8, 8, 8, 8, 0)


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    """p50/p99/max in milliseconds."""
    ms = [s * 1000 for s in seconds]
    p50, p99, top = percentile(ms, 50), percentile(ms, 99), max(ms) if ms else None
    return {"n": len(ms), "p50_ms": _round(p50), "p99_ms": _round(p99), "max_ms": _round(top)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 100 else f"{value:.2f}"
    return str(value)


def header() -> str:
    line = "".join(c.ljust(w) if w else c for c, w in zip(COLUMNS, WIDTHS, strict=True))
    return line + "\n" + "-" * 124


def row(name: str, result: dict[str, Any], notes: str = "") -> str:
    cells = (
        name,
        result.get("n"),
        result.get("rate_per_s"),
        result.get("p50_ms"),
        result.get("p99_ms"),
        result.get("max_ms"),
    )
    return "".join(_cell(c).ljust(w) for c, w in zip(cells, WIDTHS, strict=False)) + notes


def _cdf(ax: Any, series: dict[str, list[float]], title: str) -> None:
    for label, seconds in series.items():
        if not seconds:
            continue
        ms = sorted(s * 1000 for s in seconds)
        ax.plot(ms, [(i + 1) / len(ms) for i in range(len(ms))], label=f"{label} (n={len(ms)})")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("latency, ms (log)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _bars(ax: Any, values: dict[str, float | None], title: str, ylabel: str) -> None:
    names = [k for k, v in values.items() if v is not None]
    ax.bar(names, [values[k] for k in names])
    for i, name in enumerate(names):
        ax.annotate(f"{values[name]:.0f}", (i, values[name]), ha="center", va="bottom", fontsize=7)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelsize=7, rotation=15)


def plot(results: dict[str, Any], samples: dict[str, dict[str, list[float]]], path: str) -> None:
    """Latency distributions (CDFs) and throughput/memory bars in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    _cdf(axes[0][0], samples.get("push", {}), "push latency")
    _cdf(axes[0][1], samples.get("pull", {}), "pull latency")
    _cdf(axes[0][2], samples.get("fan-out", {}), "fan-out: push start to poke arrival")
    contention = results.get("push-contention", {})
    _bars(
        axes[1][0],
        {k: v.get("rate_per_s") for k, v in contention.items() if isinstance(v, dict)},
        "push-contention: accepted pushes/s",
        "pushes/s",
    )
    idle = results.get("idle-capacity", {})
    _bars(
        axes[1][1],
        {
            "baseline": _mb(idle.get("rss_baseline_kb")),
            f"{idle.get('listeners', 0)} open": _mb(idle.get("rss_open_kb")),
            "after close": _mb(idle.get("rss_after_kb")),
        },
        f"idle-capacity: server RSS ({idle.get('rss_per_listener_kb', '-')} KB per listener)",
        "MB",
    )
    burst = results.get("connect-burst", {})
    _bars(
        axes[1][2],
        {k: float(v) for k, v in burst.get("counts", {}).items()},
        f"connect-burst of {burst.get('listeners', 0)}",
        "connections",
    )
    fig.suptitle(results.get("meta", {}).get("title", "bench"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _mb(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024


# The targets: (label, path into the results, comparison, bound).
TARGETS: list[tuple[str, tuple[str, ...], str, float]] = [
    ("push-contention 1 space: non-200", ("push-contention", "one-space", "non_200"), "<=", 0),
    ("push-contention 1 space: pushes/s", ("push-contention", "one-space", "rate_per_s"), ">=", 800),
    ("group commit speedup (1 space)", ("push-contention", "group_commit_speedup"), ">=", 5),
    ("push-single p50 ms", ("push-single", "p50_ms"), "<=", 5),
    ("pull unchanged cookie p50 ms", ("pull", "unchanged", "p50_ms"), "<=", 2),
    ("fan-out 1000 listeners p99 ms", ("fan-out", "1000", "p99_ms"), "<=", 50),
    ("fan-out 5000 listeners p99 ms", ("fan-out", "5000", "p99_ms"), "<=", 250),
    ("idle-capacity KB per listener", ("idle-capacity", "rss_per_listener_kb"), "<=", 16),
    ("idle-capacity RSS after close / baseline", ("idle-capacity", "rss_after_vs_baseline"), "<=", 1.10),
    ("connect-burst resets", ("connect-burst", "reset"), "<=", 0),
    ("20 spaces / 1 space pushes/s (20 writers)", ("push-contention", "spaces_vs_one"), ">=", 0.9),
    ("scale: createSpace p50 at N / fresh", ("scale", "ratio", "createSpace"), "<=", 1.3),
    ("scale: first push p50 at N / fresh", ("scale", "ratio", "first push"), "<=", 1.3),
    ("scale: first pull p50 at N / fresh", ("scale", "ratio", "first pull"), "<=", 1.3),
    ("scale: admin list p50 at N / fresh", ("scale", "ratio", "admin list"), "<=", 1.3),
]


def _get(results: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(results, dict) or part not in results:
            return None
        results = results[part]
    return results


def targets(runs: list[dict[str, Any]]) -> list[str]:
    """One line per target: the median over the runs that measured it, and whether it is met.
    The idle and burst targets are about 10,000 listeners; smaller runs are marked."""
    lines = [f"{'target':44}{'median':>10}  {'runs':>4}  {'bound':>9}  result"]
    for label, path, op, bound in TARGETS:
        values = [v for v in (_get(r, path) for r in runs) if isinstance(v, int | float)]
        if not values:
            lines.append(f"{label:44}{'-':>10}  {0:>4}  {op} {bound:<6}  not measured")
            continue
        value = statistics.median(float(v) for v in values)  # over runs: the mean of two middles
        met = value <= bound if op == "<=" else value >= bound
        note = "met" if met else "NOT MET"
        sizes = {_get(r, (path[0], "listeners")) for r in runs} - {None}
        if path[0] in ("idle-capacity", "connect-burst") and sizes and max(sizes) < 10_000:
            note += f" (at {max(sizes)} listeners, not 10000)"
        lines.append(f"{label:44}{value:>10.2f}  {len(values):>4}  {op} {bound:<6}  {note}")
    return lines
