"""bench/results/REPORT.md from bench.run_all's results: targets first, then each benchmark.

Every figure is written `median [min-max]` over the runs. A target is judged on the median;
when some runs fall on the other side of the line the verdict says how many.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPRODUCE = "make bench"  # = python scripts/devstack.py -- python -m bench.run_all


@dataclass
class Verdict:
    target: str
    figure: str
    met: bool | None  # None: not measured in this run
    note: str = ""

    @property
    def word(self) -> str:
        if self.met is None:
            return "not measured"
        return ("met" if self.met else "**NOT met**") + (f" ({self.note})" if self.note else "")


def fmt(summary: dict[str, float] | None, digits: int = 2, unit: str = "") -> str:
    if not summary:
        return "n/a"
    median, low, high = (f"{summary[k]:,.{digits}f}" for k in ("median", "min", "max"))
    if low == high:
        return f"{median}{unit}"
    return f"{median}{unit} [{low}-{high}]"


def _runs(count: int) -> str:
    return "1 run" if count == 1 else f"{count} runs"


def _over(values: list[float], passes: Callable[[float], bool]) -> str:
    failing = sum(1 for value in values if not passes(value))
    return f"{failing} of {len(values)} runs on the wrong side" if failing else ""


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    out: list[Verdict] = []
    dispatch = results.get("dispatch") or {}
    big, small = dispatch.get("100000"), dispatch.get("1000")
    target = "Dispatcher: 100,000 due triggers committed and enqueued in < 20 s (issue 4)"
    if big:
        ticks = [s["tick_seconds"] for s in big["samples"]]
        out.append(
            Verdict(
                target,
                f"tick {fmt(big['tick_seconds'], unit=' s')} "
                f"({fmt(big['triggers_per_second'], 0)} triggers/s); whole process including "
                f"start-up {fmt(big['seconds'], unit=' s')}",
                big["tick_seconds"]["median"] < 20,
                _over(ticks, lambda v: v < 20),
            )
        )
    else:
        out.append(Verdict(target, "n/a", None))
    target = "Dispatcher: peak RSS at 100,000 within 50 MB of the figure at 1,000 (issue 4)"
    if big and small:
        growth = big["peak_rss_mb"]["median"] - small["peak_rss_mb"]["median"]
        out.append(
            Verdict(
                target,
                f"{fmt(small['peak_rss_mb'], 1, ' MB')} at 1,000; "
                f"{fmt(big['peak_rss_mb'], 1, ' MB')} at 100,000 (+{growth:.1f} MB)",
                growth <= 50,
            )
        )
    else:
        out.append(Verdict(target, "n/a", None))
    out.extend(_peer_verdicts(results.get("peers")))
    e2e = results.get("e2e")
    if e2e:
        summary = e2e["summary"]
        p99s = [row["lag_p99"] for row in e2e["samples"]]
        rates = [row["runs_per_second"] for row in e2e["samples"]]
        out.append(
            Verdict(
                f"Runner: p99 lag < 5 s, {e2e['runs']:,} runs due at once (issue 5)",
                f"p99 {fmt(summary['lag_p99'], unit=' s')}, "
                f"p50 {fmt(summary['lag_p50'], unit=' s')}",
                summary["lag_p99"]["median"] < 5,
                _over(p99s, lambda v: v < 5),
            )
        )
        out.append(
            Verdict(
                "Runner: at least 200 runs/s (issue 5)",
                f"{fmt(summary['runs_per_second'], 0)} runs/s "
                f"(one worker, concurrency {e2e['concurrency']})",
                summary["runs_per_second"]["median"] >= 200,
                _over(rates, lambda v: v >= 200),
            )
        )
    api = results.get("api")
    if api:
        for op, limit in (("create", 50), ("get", 50), ("list", 100)):
            p99s = [sample[op]["p99"] for sample in api["samples"]]
            stat = api["summary"][op]
            out.append(
                Verdict(
                    f"API: {op} p99 < {limit} ms (issue 6)",
                    f"p99 {fmt(stat['p99'], 1, ' ms')}, p50 {fmt(stat['p50'], 1, ' ms')}",
                    stat["p99"]["median"] < limit,
                    _over(p99s, lambda v, limit=limit: v < limit),
                )
            )
    schedule = results.get("schedule")
    if schedule:
        worst = schedule["worst_per_100k_seconds"]
        out.append(
            Verdict(
                "Schedule engine: 100,000 next-fire instants in < 3 s (issue 3)",
                f"slowest shape {fmt(worst, 3, ' s')}",
                worst["median"] < 3,
            )
        )
    return out


def _peer_verdicts(comparison: dict[str, Any] | None) -> list[Verdict]:
    speed = "Side-by-side at N = 10,000: ours at least 5x faster than the fastest peer (issue 8)"
    memory = "Side-by-side at N = 10,000: ours with lower peak memory than that peer (issue 8)"
    rows = [row for row in (comparison or {}).get("rows", []) if row["n"] == 10_000]
    ours = next((row for row in rows if row["peer"] == "ours" and row["finished"]), None)
    finished = [row for row in rows if row["peer"] != "ours" and row["finished"]]
    if ours is None or not rows:
        return [Verdict(speed, "n/a", None), Verdict(memory, "n/a", None)]
    if not finished:
        cap = comparison["timeout_seconds"]
        figure = f"ours {fmt(ours['seconds'], unit=' s')}; no peer finished within {cap:.0f} s"
        return [Verdict(speed, figure, True), Verdict(memory, "no peer finished", None)]
    fastest = min(finished, key=lambda row: row["seconds"]["median"])
    ratio = fastest["time_ratio"]
    speed_figure = (
        f"ours {fmt(ours['seconds'], unit=' s')}; fastest peer, {fastest['label']}, "
        f"{fmt(fastest['seconds'], unit=' s')}: {ratio:.1f}x"
    )
    memory_figure = (
        f"ours {fmt(ours['peak_rss_mb'], 1, ' MB')}; {fastest['label']} "
        f"{fmt(fastest['peak_rss_mb'], 1, ' MB')}"
    )
    lower = ours["peak_rss_mb"]["median"] < fastest["peak_rss_mb"]["median"]
    return [Verdict(speed, speed_figure, ratio >= 5), Verdict(memory, memory_figure, lower)]


def headline_markdown(results: dict[str, Any]) -> str:
    lines = ["| target | this run: median [min-max] | verdict |", "|---|---|---|"]
    from bench import report_admission  # it imports Verdict and fmt from here

    found = verdicts(results) + report_admission.verdicts(results)
    lines += [f"| {v.target} | {v.figure} | {v.word} |" for v in found]
    return "\n".join(lines)


def _machine(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    skip = ("cores", "memory_gib", "cpu", "node", "load_average_at_start", "load_average_at_end")
    facts = ", ".join(f"{k} {v}" for k, v in machine.items() if k not in skip)
    load = machine.get("load_average_at_start")
    code = results.get("code") or {}
    measured = f"commit `{code.get('commit', 'unknown')}` ({code.get('commit_subject', '')})"
    if code.get("uncommitted_product_changes"):
        measured += ", with uncommitted changes in " + ", ".join(
            code["uncommitted_product_changes"]
        )
    if code.get("commit_at_end"):
        measured += f"; **commits landed during the run** (`{code['commit_at_end']}` at the end)"
    return [
        f"- **Code measured**: {measured}.",
        f"- **Machine**: {machine['cores']} cores ({machine.get('cpu', '?')}), "
        f"{machine['memory_gib']} GiB memory.",
        f"- **Versions and servers**: {facts}.",
        f"- **Run**: started {results['started_at']} UTC, "
        f"{results.get('total_seconds', 0) / 60:.1f} minutes"
        + (" (the last partial run)" if results.get("partial_runs") else "")
        + (f", load average at start {', '.join(f'{x:.2f}' for x in load)}" if load else "")
        + ("; **quick smoke run** (small N, one run each)" if results.get("quick") else "")
        + ".",
        "- **Noise**: this machine is shared: other engineers' test suites run on it and on the "
        "same PostgreSQL and Redis servers while the benchmarks run. Figures move by tens of "
        "percent from run to run (the min-max ranges show how much); compare ratios within one "
        "run rather than absolute numbers across runs.",
        *_partial(results),
    ]


def _partial(results: dict[str, Any]) -> list[str]:
    """Which steps were measured when, if the figures come from more than one run."""
    if not results.get("partial_runs"):
        return []
    steps = results.get("step_at") or {}
    when = ", ".join(f"{name} {at}" for name, at in sorted(steps.items(), key=lambda i: i[1]))
    runs = "; ".join(
        f"{', '.join(p['steps'])} re-run at {p['at']} (commit `{p['commit']}`"
        + (
            ", the same product code (app, tasks, web, migrations) as the first run's"
            if p.get("same_product_code")
            else ""
        )
        + ")"
        for p in results["partial_runs"]
    )
    return [f"- **Figures from more than one run**: {runs}. Each step finished at: {when} (UTC)."]


def _dispatch_section(results: dict[str, Any], images: list[str]) -> list[str]:
    rows = sorted((results.get("dispatch") or {}).values(), key=lambda row: row["n"])
    if not rows:
        return []
    lines = [
        "## Dispatcher throughput and memory (`bench.dispatch`)",
        "",
        "N due triggers (a mix of five expressions due at the same minute) in a fresh database; "
        "one `python -m tasks.dispatch --once` process dispatches them all (batches of 500, "
        "time budget lifted so one tick takes everything). *Tick* is the tick's own duration "
        "(fence, recovery sweep, every batch claimed, inserted, committed and published to "
        "Redis, `enqueued_at` stamped); *process* adds interpreter start-up and imports. "
        "Peak RSS is the dispatcher process's own high-water mark (VmHWM).",
        "",
        "| N | runs | tick (s) | triggers/s (tick) | process (s) | peak RSS (MB) | CPU (s) |",
        "|---:|---:|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['n']:,} | {row['runs']} | {fmt(row['tick_seconds'])} | "
            f"{fmt(row['triggers_per_second'], 0)} | {fmt(row['seconds'])} | "
            f"{fmt(row['peak_rss_mb'], 1)} | {fmt(row['cpu_seconds'])} |"
        )
    lines.append("")
    lines += [f"![{name}]({name})" for name in images if name.startswith("dispatch")]
    return [*lines, ""]


def _peers_section(results: dict[str, Any], images: list[str]) -> list[str]:
    comparison = results.get("peers")
    if not comparison:
        return []
    cap = comparison["timeout_seconds"]
    lines = [
        "## Side-by-side: this dispatcher, celery beat, celery-redbeat (`bench.peers`)",
        "",
        "The same N schedules, all due at the same minute, dispatched into the same Redis "
        "broker (one `run_trigger` message each, queue `runs`) by: **this dispatcher** (one "
        "tick over N due triggers in PostgreSQL); **celery beat** with its default "
        "`PersistentScheduler` and N `crontab(minute=M)` entries; **celery-redbeat**'s "
        "`RedBeatScheduler` with the same N entries. The beats run `celery.beat.Service`'s "
        "loop (what `celery beat` runs), used as libraries. Each peer runs in its own process, "
        "set up before the due instant T (beats: entries stored; ours: imports). *Time* runs "
        "from T until LLEN of the queue reaches N (polled every 5 ms) for the beats, and for "
        "ours until all N runs are committed in PostgreSQL (polled every 20 ms): since "
        "admission (DESIGN section 12) our tick puts only the runs that have a slot "
        "(`MAX_RUNNING`) on the broker, the rest wait in PostgreSQL, so this measures how "
        "fast each puts N due runs in its queue, not run throughput (the end-to-end "
        "side-by-side above does that); *CPU* is the "
        "dispatching process's CPU time over that window; *peak RSS* is the process's own "
        "high-water mark over its life, set-up included. Ratios are the peer's median over "
        f"ours (above 1: ours is better). Each run is capped at {cap:.0f} s; runs of one N "
        "take turns between the peers.",
        "",
        "| N | dispatcher | runs | time to queue all (s) | messages/s | first message (s) "
        "| CPU (s) | peak RSS (MB) | time ratio | CPU ratio | RSS ratio |",
        "|---:|---|---:|---|---|---|---|---|---:|---:|---:|",
    ]
    for row in sorted(comparison["rows"], key=lambda r: (r["n"], r["peer"] != "ours")):
        head = f"| {row['n']:,} | {row['label']} |"
        if row.get("skipped"):
            lines.append(f"{head} 0 | not run: {row['skipped']} | | | | | | | |")
            continue
        if not row["finished"]:
            lines.append(
                f"{head} {row['runs']} | **did not finish in {cap:.0f} s** "
                f"({row['queued_at_cap']:,} of {row['n']:,} queued) | "
                f"{fmt(row['messages_per_second'], 0)} | | {fmt(row['cpu_seconds'])} | "
                f"{fmt(row['peak_rss_mb'], 1)} (at the cap) | "
                f"> {row.get('time_ratio_at_least', 0):.0f}x | | |"
            )
            continue
        ratios = " | ".join(
            f"{row[key]:.1f}x" if key in row else "" for key in ("time_ratio", "cpu_ratio")
        )
        rss = f"{row['rss_ratio']:.2f}x" if "rss_ratio" in row else ""
        lines.append(
            f"{head} {row['runs']} | {fmt(row['seconds'])} | {fmt(row['messages_per_second'], 0)}"
            f" | {fmt(row['first_message_seconds'], 3)} | {fmt(row['cpu_seconds'])} | "
            f"{fmt(row['peak_rss_mb'], 1)} | {ratios} | {rss} |"
        )
    lines += ["", "Server-side CPU over the same window (not in the CPU column above):", ""]
    for row in comparison["rows"]:
        if row["finished"] and row.get("redis_cpu_seconds"):
            pg = row.get("postgres_cpu_seconds")
            lines.append(
                f"- {row['label']}, N = {row['n']:,}: Redis server "
                f"{fmt(row['redis_cpu_seconds'])} s"
                + (f", PostgreSQL backends {fmt(pg)} s" if pg else "")
            )
    lines += [
        "",
        "The Redis figure is the whole server's `used_cpu` (other test runs share it). Ours "
        "does its bookkeeping in PostgreSQL (the runs rows are the durable record); RedBeat "
        "keeps its schedule in Redis; celery beat in process memory and a shelve file.",
        "",
    ]
    lines += [f"![{name}]({name})" for name in images if name.startswith("peers")]
    return [*lines, ""]


def _e2e_section(results: dict[str, Any], images: list[str]) -> list[str]:
    e2e = results.get("e2e")
    if not e2e:
        return []
    lines = [
        "## End-to-end lag (`bench.e2e_lag`)",
        "",
        f"{e2e['runs']:,} one-time `echo` triggers due at the same instant, one "
        f"`celery -A tasks worker` (prefork, concurrency {e2e['concurrency']}); at the due "
        "instant their pending runs are handed to the broker in one go, as a tick does after "
        "its commit (*hand-off*). Lag is `started_at - scheduled_for` of each run; throughput "
        f"is runs from the due instant to the last `finished_at`. {_runs(len(e2e['samples']))}.",
        "",
        "| run | p50 (s) | p95 (s) | p99 (s) | max (s) | runs/s | hand-off (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, row in enumerate(e2e["samples"], 1):
        lines.append(
            f"| {number} | {row['lag_p50']:.2f} | {row['lag_p95']:.2f} | {row['lag_p99']:.2f} "
            f"| {row['lag_max']:.2f} | {row['runs_per_second']:.0f} | "
            f"{row.get('hand_off_seconds', 0):.2f} |"
        )
    lines.append("")
    lines += [f"![{name}]({name})" for name in images if name.startswith("e2e")]
    return [*lines, ""]


def _api_section(results: dict[str, Any], images: list[str]) -> list[str]:
    api = results.get("api")
    if not api:
        return []
    lines = [
        "## API latency (`bench.api_latency`)",
        "",
        f"{api['triggers']:,} stored triggers, gunicorn (2 gthread workers) serving "
        f"`web:create_app()`, one client over keep-alive, {api['requests']:,} requests per "
        f"operation, {_runs(len(api['samples']))}. List is `GET /triggers?limit=100` walking "
        "the cursor.",
        "",
        "| operation | p50 (ms) | p90 (ms) | p95 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for op, stat in api["summary"].items():
        cells = " | ".join(fmt(stat[k], 1) for k in ("p50", "p90", "p95", "p99", "max"))
        lines.append(f"| {op} | {cells} |")
    lines.append("")
    lines += [f"![{name}]({name})" for name in images if name.startswith("api")]
    return [*lines, ""]


def _schedule_section(results: dict[str, Any]) -> list[str]:
    schedule = results.get("schedule")
    if not schedule:
        return []
    lines = [
        "## Schedule engine (`bench.schedule_bench`)",
        "",
        f"Seconds per 100,000 next-fire instants, {_runs(schedule['runs'])}, one process each.",
        "",
        "| shape | seconds per 100,000 |",
        "|---|---|",
    ]
    for name, stat in schedule["per_100k_seconds"].items():
        lines.append(f"| {name} | {fmt(stat, 3)} |")
    return [*lines, ""]


def render(results: dict[str, Any], images: list[str]) -> str:
    from bench import report_admission, report_cost

    lines = [
        "# Benchmark report",
        "",
        f"Reproduce with `{REPRODUCE}` (`python scripts/devstack.py -- python -m bench.run_all`;"
        " `--quick` for a smoke run). Figures are `median [min-max]` over the runs.",
        "",
        *_machine(results),
        "",
        "## Targets",
        "",
        headline_markdown(results),
        "",
        *report_admission.sections(results, images),
        *report_cost.sections(results),
        *_dispatch_section(results, images),
        *_peers_section(results, images),
        *_e2e_section(results, images),
        *_api_section(results, images),
        *_schedule_section(results),
        "## How the figures are taken",
        "",
        "- Peak RSS is read from `/proc/<pid>/status` (VmHWM) of the measured process, not "
        "from `wait4`'s `ru_maxrss`: Linux carries the parent's RSS high-water mark into a "
        "child's maxrss at fork and exec, so a child of a 70 MB benchmark process would never "
        "read below 70 MB.",
        "- The peers' due minute: rather than wait up to a minute for a real minute boundary "
        "per run, each peer's clock (`Celery.now`, which every schedule and both schedulers "
        "read, and the `now` our tick takes) is set ahead of the wall clock by about a quarter "
        "of an hour (minute M is picked 15 minutes ahead so that no set-up, however slow, "
        "reaches it) so that minute M begins at the chosen instant T, 3 s after the peer is "
        "ready. No scheduler code is changed or copied.",
        "- Our dispatcher in the side-by-side runs `tasks.dispatch.tick` in a process started "
        "before T (as a worker is, when beat's tick message arrives); `bench.dispatch` above "
        "starts a fresh `python -m tasks.dispatch --once` process per run instead, so its "
        "*process* column includes interpreter start-up and imports.",
        "- CPU columns are the measured process only; the servers' share is listed apart.",
        "",
    ]
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path, images: list[str]) -> Path:
    path = out / "REPORT.md"
    path.write_text(render(results, images))
    return path
