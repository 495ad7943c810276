"""Numbers and pictures for scripts/bench.py: percentiles, table rows, the plot."""

from __future__ import annotations

import math
from typing import Any

COLUMNS = ("scenario", "n", "rate/s", "p50 ms", "p99 ms", "max ms", "notes")
WIDTHS = (52, 7, 8, 8, 8, 8, 0)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


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
