"""The report's PNG plots (matplotlib, Agg backend), drawn from bench.run_all's results.

Each function takes the results dictionary (as saved in results.json) and the output folder,
draws one figure, and returns its file name, or None when the results lack that benchmark.
Medians are the points or bars; whiskers span the min and max of the runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib import ticker  # noqa: E402

COLOURS = {"ours": "#1f77b4", "celery-beat": "#d62728", "redbeat": "#ff7f0e"}
DPI = 110


def draw_all(results: dict[str, Any], out: Path) -> list[str]:
    """Every plot the results allow; returns the file names written in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    drawers: list[Callable[[dict[str, Any], Path], str | None]] = [
        dispatch_time,
        dispatch_memory,
        e2e_lag,
        api_latency,
        peers,
    ]
    from bench import plots_admission  # it takes its helpers from here

    drawers += plots_admission.DRAWERS
    return [name for draw in drawers if (name := draw(results, out))]


def _whiskers(summaries: list[dict[str, float]]) -> tuple[list[float], list[list[float]]]:
    medians = [s["median"] for s in summaries]
    errors = [
        [m - s["min"] for m, s in zip(medians, summaries, strict=True)],
        [s["max"] - m for m, s in zip(medians, summaries, strict=True)],
    ]
    return medians, errors


def _n_axis(axis: plt.Axes, counts: list[int]) -> None:
    """A log x axis ticked at the measured N, written 1,000 rather than 10^3."""
    axis.set_xscale("log")
    axis.set_xticks(counts, [f"{c:,}" for c in counts])
    axis.xaxis.set_minor_formatter(ticker.NullFormatter())
    axis.set_xlim(counts[0] / 1.6, counts[-1] * 1.6)


def _plain_log_y(axis: plt.Axes) -> None:
    axis.set_yscale("log")
    axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.yaxis.set_minor_formatter(ticker.NullFormatter())


def _save(fig: plt.Figure, out: Path, name: str, *, tight: bool = True) -> str:
    if tight:
        fig.tight_layout()
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return name


def _dispatch_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = results.get("dispatch") or {}
    return sorted(rows.values(), key=lambda row: row["n"])


def dispatch_time(results: dict[str, Any], out: Path) -> str | None:
    rows = _dispatch_rows(results)
    if not rows:
        return None
    counts = [row["n"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, marker in (
        ("tick_seconds", "tick (claim, insert, commit, enqueue)", "o"),
        ("seconds", "whole process (start-up included)", "s"),
    ):
        medians, errors = _whiskers([row[key] for row in rows])
        left.errorbar(counts, medians, yerr=errors, marker=marker, capsize=4, label=label)
    left.axhline(20, color="grey", linestyle="--", linewidth=1)
    left.annotate(
        "target: 100,000 in < 20 s",
        (counts[0], 20),
        xytext=(0, 4),
        textcoords="offset points",
        fontsize=8,
        color="grey",
    )
    _n_axis(left, counts)
    _plain_log_y(left)
    left.set(xlabel="due triggers (N)", ylabel="seconds")
    left.set_title("Dispatch time, one tick")
    left.legend(fontsize=8)
    medians, errors = _whiskers([row["triggers_per_second"] for row in rows])
    right.errorbar(counts, medians, yerr=errors, marker="o", capsize=4)
    right.axhline(5000, color="grey", linestyle="--", linewidth=1)
    right.annotate(
        "100,000 in 20 s = 5,000/s",
        (counts[0], 5000),
        xytext=(0, 4),
        textcoords="offset points",
        fontsize=8,
        color="grey",
    )
    _n_axis(right, counts)
    right.set(xlabel="due triggers (N)", ylabel="triggers per second (tick)")
    right.set_ylim(bottom=0)
    right.set_title("Dispatch throughput")
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
    return _save(fig, out, "dispatch_throughput.png")


def dispatch_memory(results: dict[str, Any], out: Path) -> str | None:
    rows = _dispatch_rows(results)
    if not rows:
        return None
    counts = [row["n"] for row in rows]
    fig, axis = plt.subplots(figsize=(6.5, 4.2))
    medians, errors = _whiskers([row["peak_rss_mb"] for row in rows])
    axis.errorbar(counts, medians, yerr=errors, marker="o", capsize=4, label="peak RSS")
    if rows[0]["n"] == 1000:
        limit = rows[0]["peak_rss_mb"]["median"] + 50
        axis.axhline(limit, color="grey", linestyle="--", linewidth=1)
        axis.annotate(
            "target ceiling: figure at 1,000 + 50 MB",
            (counts[0], limit),
            xytext=(0, -12),
            textcoords="offset points",
            fontsize=8,
            color="grey",
        )
    _n_axis(axis, counts)
    for count, median in zip(counts, medians, strict=True):
        axis.annotate(f"{median:.1f}", (count, median), xytext=(0, 6),
                      textcoords="offset points", ha="center", fontsize=8)  # fmt: skip
    axis.set(xlabel="due triggers (N)", ylabel="MB")
    axis.set_ylim(bottom=0)
    axis.set_title("Dispatcher peak RSS (whole process)")
    axis.grid(True, which="both", alpha=0.3)
    return _save(fig, out, "dispatch_memory.png")


def e2e_lag(results: dict[str, Any], out: Path) -> str | None:
    e2e = results.get("e2e")
    if not e2e:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    lags = e2e.get("lags") or []
    if lags:
        top = max(max(run) for run in lags if run)
        bins = [top * i / 40 for i in range(41)]
        for number, run in enumerate(lags, 1):
            left.hist(run, bins=bins, histtype="step", linewidth=1.5, label=f"run {number}")
            ordered = sorted(run)
            right.plot(
                ordered,
                [100 * (i + 1) / len(ordered) for i in range(len(ordered))],
                label=f"run {number}",
            )
        left.set(xlabel="lag: started_at - scheduled_for (s)", ylabel="runs")
        left.set_title(f"Lag distribution, {e2e['runs']:,} runs due at once")
        left.legend(fontsize=8)
        right.set(xlabel="lag (s)", ylabel="% of runs started")
    else:  # only the percentiles are known
        names = ("lag_p50", "lag_p95", "lag_p99", "lag_max")
        medians, errors = _whiskers([e2e["summary"][name] for name in names])
        right.bar([n.removeprefix("lag_") for n in names], medians, yerr=errors, capsize=4)
        left.set_axis_off()
        right.set(ylabel="lag (s)")
    if lags:
        right.axvline(5, color="grey", linestyle="--", linewidth=1, label="p99 target")
        right.set_xlim(0, max(5.5, top * 1.05))
        right.legend(fontsize=8, loc="lower right")
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
    summary = e2e["summary"]
    right.set_title(
        f"p99 {summary['lag_p99']['median']:.2f} s (target < 5 s); "
        f"{summary['runs_per_second']['median']:.0f} runs/s (target >= 200)",
        fontsize=10,
    )
    return _save(fig, out, "e2e_lag.png")


def api_latency(results: dict[str, Any], out: Path) -> str | None:
    api = results.get("api")
    if not api:
        return None
    summary = api["summary"]
    operations = list(summary)
    stats = ("p50", "p90", "p95", "p99")
    targets = {"create": 50, "get": 50, "list": 100}
    fig, axis = plt.subplots(figsize=(8, 4.4))
    width = 0.8 / len(stats)
    for number, stat in enumerate(stats):
        medians, errors = _whiskers([summary[op][stat] for op in operations])
        positions = [i + (number - (len(stats) - 1) / 2) * width for i in range(len(operations))]
        axis.bar(positions, medians, width, yerr=errors, capsize=3, label=stat)
    for i, op in enumerate(operations):
        if op in targets:
            axis.hlines(targets[op], i - 0.45, i + 0.45, colors="black", linestyles="--")
            axis.annotate(
                f"p99 target {targets[op]} ms",
                (i - 0.45, targets[op]),
                xytext=(0, 3),
                textcoords="offset points",
                fontsize=8,
            )
    axis.set_xticks(range(len(operations)), operations)
    axis.set(ylabel="ms")
    axis.set_title(
        f"API latency under gunicorn, {api['triggers']:,} triggers stored, "
        f"{api['requests']:,} requests each",
        fontsize=10,
    )
    axis.legend(fontsize=8, loc="upper left")
    axis.grid(True, axis="y", alpha=0.3)
    return _save(fig, out, "api_latency.png")


def peers(results: dict[str, Any], out: Path) -> str | None:
    comparison = results.get("peers")
    if not comparison:
        return None
    rows = comparison["rows"]
    counts = sorted({row["n"] for row in rows})
    names = list(dict.fromkeys(row["peer"] for row in rows))
    labels = {row["peer"]: row["label"] for row in rows}
    cap = comparison["timeout_seconds"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    panels = (
        ("seconds", "seconds from the due instant until all N are queued", True),
        ("cpu_seconds", "CPU seconds of the dispatching process (window)", True),
        ("peak_rss_mb", "peak RSS of the dispatching process (MB)", False),
    )
    width = 0.8 / len(names)
    for axis, (key, title, log) in zip(axes, panels, strict=True):
        for number, name in enumerate(names):
            offset = (number - (len(names) - 1) / 2) * width
            for i, count in enumerate(counts):
                row = next(r for r in rows if r["peer"] == name and r["n"] == count)
                label = labels[name] if i == 0 else None
                _peer_bar(axis, i + offset, width, row, key, cap=cap, label=label)
        axis.set_xticks(range(len(counts)), [f"N = {c:,}" for c in counts])
        if log:
            _plain_log_y(axis)
        axis.margins(y=0.15)
        axis.set_title(title, fontsize=10)
        axis.grid(True, axis="y", which="both", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(names))
    fig.suptitle("Same N schedules due at the same minute, published into the same Redis")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, out, "peers.png", tight=False)


def _peer_bar(
    axis: plt.Axes,
    x: float,
    width: float,
    row: dict[str, Any],
    key: str,
    *,
    cap: float,
    label: str | None,
) -> None:
    """One peer's bar: the median with min-max whiskers and its value; hatched at the cap
    for a run that did not finish; a note for a run that was not attempted."""
    colour = COLOURS[row["peer"]]
    if row.get("skipped") or (key not in row and key != "seconds"):
        axis.annotate("not run", (x, 0.02), xycoords=("data", "axes fraction"), ha="center",
                      va="bottom", rotation=90, fontsize=7)  # fmt: skip
        return
    if row["finished"]:
        medians, errors = _whiskers([row[key]])
        axis.bar(x, medians, width, yerr=errors, capsize=3, color=colour, label=label)
        value = row[key]["max"]  # the label goes above the whisker
        text = f"{medians[0]:.3g}"
    else:  # stopped at the cap: the time is "more than the cap", the rest measured till then
        value = cap if key == "seconds" else row[key]["median"]
        axis.bar(x, value, width, color="white", edgecolor=colour, hatch="//", label=label)
        text = f"> {cap:.0f}" if key == "seconds" else f"{value:.3g} (cap)"
    axis.annotate(text, (x, value), xytext=(0, 3), textcoords="offset points", ha="center",
                  fontsize=7)  # fmt: skip
