"""The report's issue-12 plots: noisy-neighbour lag and queue depth, the burst's memory, the
end-to-end side-by-side. Same conventions as bench.plots (one figure each, file name back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.plots import DPI, _n_axis, _save, plt

COLOURS = {
    "ours": "#1f77b4",
    "pre": "#7f7f7f",
    "celery-beat": "#d62728",
    "redbeat": "#ff7f0e",
    "celery-bare": "#2ca02c",
}


def noisy_lag(results: dict[str, Any], out: Path) -> str | None:
    noisy = results.get("noisy") or {}
    rows = sorted(noisy.get("rows", []), key=lambda r: r["backlog"])
    if not rows:
        return None
    fig, axis = plt.subplots(figsize=(7, 4.2), dpi=DPI)
    series = [("admission", rows, COLOURS["ours"], "-")]
    pre = sorted(noisy.get("pre_rows", []), key=lambda r: r["backlog"])
    if pre:
        series.append((f"before admission ({noisy['pre_commit']})", pre, COLOURS["pre"], "--"))
    counts = sorted({r["backlog"] for _, rs, _, _ in series for r in rs})
    for label, rs, colour, style in series:
        xs = [r["backlog"] for r in rs]
        axis.plot(xs, [r["small_lag_p99"] for r in rs], style, marker="o", color=colour,
                  label=f"{label}: p99")  # fmt: skip
        axis.plot(xs, [r["small_lag_p50"] for r in rs], style, marker="s", color=colour,
                  alpha=0.5, label=f"{label}: p50")  # fmt: skip
        axis.scatter(xs, [r["small_lag_max"] for r in rs], marker="^", color=colour, alpha=0.5,
                     label=f"{label}: max")  # fmt: skip
    axis.axhline(2, color="black", linewidth=0.8, linestyle=":", label="target p99 2 s")
    _n_axis(axis, counts)
    axis.set_xlabel("tenant A's backlog (runs due at once)")
    axis.set_ylabel("small tenants' start lag (s)")
    axis.set_title("Noisy neighbour: 20 small tenants' lag while A waits")
    axis.set_ylim(bottom=0)
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    return _save(fig, out, "noisy_lag.png")


def noisy_depth(results: dict[str, Any], out: Path) -> str | None:
    noisy = results.get("noisy") or {}
    runs = [("admission", r) for r in noisy.get("rows", [])]
    runs += [(f"before ({noisy.get('pre_commit')})", r) for r in noisy.get("pre_rows", [])]
    if not runs:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), dpi=DPI, sharex=True)
    for label, row in runs:
        series = row.get("depth_series") or []
        if not series:
            continue
        xs = [s[0] for s in series]
        axis = top if label == "admission" else bottom
        axis.plot(xs, [s[1] for s in series], linewidth=0.9,
                  label=f"{label}, backlog {row['backlog']:,}")  # fmt: skip
    top.axhline(14, color="black", linewidth=0.8, linestyle=":", label="MAX_RUNNING + prefetch")
    top.set_title("Broker queue depth (LLEN runs, every 100 ms) from A's due instant")
    for axis in (top, bottom):
        axis.set_ylabel("messages queued")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    bottom.set_yscale("symlog")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("seconds after A's due instant")
    return _save(fig, out, "noisy_depth.png")


def burst_memory(results: dict[str, Any], out: Path) -> str | None:
    burst = results.get("burst")
    if not burst or not burst.get("series"):
        return None
    series = burst["series"]
    xs = [s[0] for s in series]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), dpi=DPI, sharex=True)
    top.plot(xs, [s[1] for s in series], color=COLOURS["ours"], label="worker RSS (all processes)")
    top.plot(xs, [s[2] for s in series], color=COLOURS["celery-bare"],
             label="Redis used_memory")  # fmt: skip
    top.set_ylabel("MB")
    top.set_ylim(bottom=0)
    top.legend(fontsize=7)
    top.set_title(f"{burst['n']:,} triggers due at T: memory and broker depth")
    bottom.plot(xs, [s[3] for s in series], color="black", linewidth=0.9)
    bottom.set_ylabel("LLEN runs")
    bottom.set_xlabel("seconds after T")
    for axis in (top, bottom):
        axis.axvline(0, color="grey", linewidth=0.8, linestyle=":")
        axis.axvline(burst["tick_seconds"], color="grey", linewidth=0.8, linestyle="--")
        axis.grid(alpha=0.3)
    return _save(fig, out, "burst_memory.png")


def peers_e2e(results: dict[str, Any], out: Path) -> str | None:
    rows = (results.get("peers_e2e") or {}).get("rows", [])
    if not rows:
        return None
    counts = sorted({r["n"] for r in rows})
    peers = list(dict.fromkeys(r["peer"] for r in rows))
    fig, axis = plt.subplots(figsize=(7, 4), dpi=DPI)
    width = 0.8 / len(peers)
    for i, peer in enumerate(peers):
        for j, n in enumerate(counts):
            row = next((r for r in rows if r["peer"] == peer and r["n"] == n), None)
            if row is None or not row.get("finished"):
                continue
            axis.bar(j + i * width, row["seconds"]["median"], width, color=COLOURS.get(peer),
                     label=row["label"] if j == 0 else None)  # fmt: skip
    axis.set_xticks([j + width * (len(peers) - 1) / 2 for j in range(len(counts))],
                    [f"N = {n:,}" for n in counts])  # fmt: skip
    axis.set_yscale("log")
    axis.set_ylabel("seconds from the due instant to the last run finished")
    axis.set_title("End to end, same worker settings (missing bar: not run / not finished)")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3, axis="y")
    return _save(fig, out, "peers_e2e.png")


def tenants_rounds(results: dict[str, Any], out: Path) -> str | None:
    rows = (results.get("tenants") or {}).get("rounds") or []
    if not rows:
        return None
    fig, axis = plt.subplots(figsize=(7, 4.2), dpi=DPI)
    counts = sorted({r["tenants"] for r in rows})
    for name, colour, style in (
        ("walk (0010)", COLOURS["ours"], "-"),
        ("every tenant (0009)", COLOURS["pre"], "--"),
    ):
        mine = sorted((r for r in rows if r["function"] == name), key=lambda r: r["tenants"])
        xs = [r["tenants"] for r in mine]
        axis.plot(xs, [r["p50_ms"] for r in mine], style, marker="o", color=colour,
                  label=f"{name}: p50")  # fmt: skip
        axis.plot(xs, [r["p90_ms"] for r in mine], style, marker="^", color=colour, alpha=0.5,
                  label=f"{name}: p90")  # fmt: skip
    _n_axis(axis, counts)
    axis.set_yscale("log")
    axis.set_xlabel("tenants with a waiting run")
    axis.set_ylabel("one admission round (ms)")
    axis.set_title("Admission round against the number of waiting tenants")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    return _save(fig, out, "tenants_rounds.png")


DRAWERS = (noisy_lag, noisy_depth, burst_memory, peers_e2e, tenants_rounds)
