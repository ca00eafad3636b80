"""The report's issue-12 part (admission): targets and sections for the noisy neighbour,
the 100,000-trigger burst, and the end-to-end side-by-side with its bare-Celery ceiling.

Kept apart from bench.report so that the older sections read as before; bench.report calls
`verdicts` and `sections`.
"""

from __future__ import annotations

from typing import Any

from bench.report import Verdict, fmt

# What issue 12 allows the broker to hold: MAX_RUNNING (6 in the noisy-neighbour set-up) plus
# the worker's prefetch (concurrency 8 x multiplier 1).
NOISY_MAX_RUNNING, NOISY_PREFETCH = 6, 8
FLAT_SECONDS = 0.5  # "flat": B's p99 at the largest backlog within this of the smallest's


def _noisy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((results.get("noisy") or {}).get("rows", []), key=lambda r: r["backlog"])


def _e2e_rows(results: dict[str, Any], peer: str) -> dict[int, dict[str, Any]]:
    rows = (results.get("peers_e2e") or {}).get("rows", [])
    return {r["n"]: r for r in rows if r["peer"] == peer and r.get("finished")}


def throughput_ratio(results: dict[str, Any], n: int) -> float | None:
    """Our runs/s over bare Celery's at N, end to end in the same step."""
    ours, bare = _e2e_rows(results, "ours").get(n), _e2e_rows(results, "celery-bare").get(n)
    if not ours or not bare:
        return None
    return bare["seconds"]["median"] / ours["seconds"]["median"]


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    out: list[Verdict] = []
    rows = _noisy_rows(results)
    at_10k = next((r for r in rows if r["backlog"] == 10_000), None)
    target = "Noisy neighbour: B's start lag p99 <= 2 s while A has 10,000 waiting (issue 12)"
    if at_10k:
        out.append(
            Verdict(
                target,
                f"p99 {at_10k['small_lag_p99']:.2f} s, p50 {at_10k['small_lag_p50']:.2f} s, "
                f"max {at_10k['small_lag_max']:.2f} s ({at_10k['small_tenants']} tenants; "
                f"{at_10k['a_waiting_at_small_fire']:,} of A's runs waiting at B's fire)",
                at_10k["small_lag_p99"] <= 2,
            )
        )
    else:
        out.append(Verdict(target, "n/a", None))
    target = (
        f"Noisy neighbour: B's p99 flat as A's backlog grows (largest within "
        f"{FLAT_SECONDS} s of smallest)"
    )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        out.append(
            Verdict(
                target,
                ", ".join(f"{r['backlog']:,}: {r['small_lag_p99']:.2f} s" for r in rows),
                last["small_lag_p99"] <= first["small_lag_p99"] + FLAT_SECONDS,
            )
        )
    else:
        out.append(Verdict(target, "n/a", None))
    drained = [r for r in rows if r.get("a_drain_seconds")]
    target = "Noisy neighbour: A's drain time within 10% of ideal (slots x run time)"
    if drained:
        r = drained[0]
        out.append(
            Verdict(
                target,
                f"{r['a_drain_seconds']:.1f} s for {r['backlog']:,} runs; ideal "
                f"{r['a_drain_ideal_seconds']:.1f} s ({r['a_drain_over_ideal']:.2f}x)",
                r["a_drain_over_ideal"] <= 1.10,
            )
        )
    else:
        out.append(Verdict(target, "n/a", None))
    if rows:
        worst = max(r["publishes_per_run"] for r in rows)
        out.append(
            Verdict(
                "Noisy neighbour: broker publishes per run <= 1.1",
                ", ".join(f"{r['backlog']:,}: {r['publishes_per_run']:.2f}" for r in rows),
                worst <= 1.1,
            )
        )
        cap = NOISY_MAX_RUNNING + NOISY_PREFETCH
        deepest = max(r["broker_depth_max"] for r in rows)
        out.append(
            Verdict(
                f"Noisy neighbour: broker queue never deeper than MAX_RUNNING + prefetch ({cap})",
                f"max LLEN {deepest} (sampled every 100 ms; with delivered-unacknowledged "
                f"messages {max(r['broker_held_max'] for r in rows)})",
                deepest <= cap,
            )
        )
    burst = results.get("burst")
    if burst:
        busy, idle = burst["ratio_to_client_insert_busy"], burst["ratio_to_client_insert"]
        out.append(
            Verdict(
                f"{burst['n']:,} due at once: all runs committed within 1.5x a bare bulk INSERT "
                "under the same load (the worker draining the burst, as during the tick)",
                f"tick {burst['tick_seconds']:.2f} s; bare INSERT from the client "
                f"{burst['bare_insert_client_busy_seconds']:.2f} s ({busy:.2f}x), server-side "
                f"{burst['bare_insert_server_busy_seconds']:.2f} s "
                f"({burst['ratio_to_server_insert_busy']:.2f}x)",
                busy <= 1.5,
            )
        )
        alone = burst["alone"]
        out.append(
            Verdict(
                f"{burst['n']:,} due at once: all runs committed within 1.5x a bare bulk INSERT "
                "with nothing else running (the tick without a worker, then the INSERT)",
                f"tick {alone['tick_seconds']:.2f} s; bare INSERT from the client "
                f"{alone['bare_insert_client_seconds']:.2f} s "
                f"({alone['ratio_to_client_insert']:.2f}x), server-side "
                f"{alone['bare_insert_server_seconds']:.2f} s "
                f"({alone['ratio_to_server_insert']:.2f}x). With the worker running the tick "
                f"took {burst['tick_seconds']:.2f} s: {idle:.2f}x the INSERT on an idle machine",
                alone["ratio_to_client_insert"] <= 1.5,
            )
        )
        first = burst["first_run_started_seconds"]
        out.append(
            Verdict(
                f"{burst['n']:,} due at once: first run started <= 1 s after the tick",
                f"{first:.2f} s" if first is not None else "no run started",
                first is not None and first <= 1,
            )
        )
        worker_growth = burst["worker_rss_mb_peak"] - burst["worker_rss_mb_before"]
        redis_growth = burst["redis_used_memory_mb_peak"] - burst["redis_used_memory_mb_before"]
        out.append(
            Verdict(
                f"{burst['n']:,} due at once: worker and broker memory flat "
                "(each grows < 20 MB over the tick)",
                f"worker (all processes) {burst['worker_rss_mb_before']:.0f} -> "
                f"{burst['worker_rss_mb_peak']:.0f} MB; Redis used_memory "
                f"{burst['redis_used_memory_mb_before']:.1f} -> "
                f"{burst['redis_used_memory_mb_peak']:.1f} MB; queue depth max "
                f"{burst['broker_depth_max']}",
                worker_growth < 20 and redis_growth < 20,
            )
        )
    e2e = results.get("e2e")
    if e2e:
        p99 = e2e["summary"]["lag_p99"]
        out.append(
            Verdict(
                f"End-to-end lag, {e2e['runs']:,} simultaneous fires: p99 <= 2 s (issue 12)",
                f"p99 {fmt(p99, unit=' s')}",
                p99["median"] <= 2,
            )
        )
    for n in sorted(_e2e_rows(results, "ours")):
        ratio = throughput_ratio(results, n)
        if ratio is None:
            continue
        ours = _e2e_rows(results, "ours")[n]["runs_per_second"]["median"]
        bare = _e2e_rows(results, "celery-bare")[n]["runs_per_second"]["median"]
        out.append(
            Verdict(
                f"Run throughput >= 60% of a bare Celery no-op task, N = {n:,} (issue 12)",
                f"{ours:.0f} runs/s against {bare:.0f} tasks/s: {100 * ratio:.0f}%",
                ratio >= 0.6,
            )
        )
    return out


def sections(results: dict[str, Any], images: list[str]) -> list[str]:
    return [
        *_noisy_section(results, images),
        *_burst_section(results, images),
        *_peers_e2e_section(results, images),
        *_tenants_section(results, images),
    ]


def _noisy_section(results: dict[str, Any], images: list[str]) -> list[str]:
    noisy = results.get("noisy")
    if not noisy:
        return []
    lines = [
        "## Noisy neighbour (`bench.noisy_neighbour`)",
        "",
        "The real processes of a deployment (the Procfile's): gunicorn serving the API, one "
        "runs worker (prefork, concurrency 8), one scheduler worker and `celery beat` ticking "
        "every second; `MAX_RUNNING=6`, `MAX_RUNNING_PER_TENANT=5`. Tenant A has *backlog* "
        "one-time triggers due at T0 (bulk-inserted), each run sleeping 0.1 s; once the tick "
        "has dispatched all of them, 20 small tenants (B) each create one one-time trigger "
        "through the API, due 1-2 s later. *B lag* is `started_at - scheduled_for` of B's "
        "runs. *A waiting* is A's pending runs at B's fire. *Publishes* are `run_trigger` "
        "LPUSHes to the `runs` queue (Redis MONITOR) over runs handed to the broker; *depth* "
        "is LLEN of `runs` sampled every 100 ms (*held* adds messages delivered to the worker "
        "but not acknowledged). Only the smallest backlog is drained (*A drain*, from T0 to "
        "A's last finish, against backlog x 0.1 s / 5 slots); at the larger ones the "
        "processes stop once B is measured. One run per row.",
        "",
        "| code | A backlog | A waiting at B's fire | B lag p50 (s) | p99 (s) | max (s) "
        "| A drain (s) | ideal (s) | publishes per run | depth max | held max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    commit = results["code"]["commit"]
    labelled = [(f"admission ({commit})", r) for r in _noisy_rows(results)]
    if noisy.get("pre_rows"):
        pre = noisy["pre_commit"]
        labelled += [(f"before admission ({pre})", r) for r in noisy["pre_rows"]]
    for label, r in labelled:
        drain = f"{r['a_drain_seconds']:.1f}" if r.get("a_drain_seconds") else "-"
        ideal = f"{r['a_drain_ideal_seconds']:.1f}" if r.get("a_drain_seconds") else "-"
        lines.append(
            f"| {label} | {r['backlog']:,} | {r['a_waiting_at_small_fire']:,} "
            f"| {r['small_lag_p50']:.2f} | {r['small_lag_p99']:.2f} | {r['small_lag_max']:.2f} "
            f"| {drain} | {ideal} | {r['publishes_per_run']:.2f} | {r['broker_depth_max']:,} "
            f"| {r['broker_held_max']:,} |"
        )
    lines.append("")
    for name in ("noisy_lag.png", "noisy_depth.png"):
        if name in images:
            lines.append(f"![{name}]({name})")
    lines.append("")
    return lines


def _burst_section(results: dict[str, Any], images: list[str]) -> list[str]:
    b = results.get("burst")
    if not b:
        return []
    lines = [
        f"## {b['n']:,} triggers due at one instant (`bench.burst`)",
        "",
        f"{b['n']:,} cron triggers (five expressions, ten tenants) due at T; the product's "
        "worker (concurrency 8, `MAX_RUNNING` = per-tenant = 8) running and warm; one tick at "
        "T in a process started beforehand, its time budget lifted (`DISPATCH_CONCURRENCY` "
        "2, the default). Then, in the same database, the same run rows go into empty copies "
        "of `runs` (`LIKE runs INCLUDING ALL`: columns, defaults, indexes) by a bare bulk "
        "INSERT, from the client in pages of 5,000 and server-side (`INSERT ... SELECT`), "
        "twice: right after the tick, while the worker goes on draining the burst (the load "
        "the tick ran under), and again once the worker has stopped (an idle machine). Last, "
        "the same tick in a second fresh database with no worker running (*alone*), and the "
        "bare INSERTs after it. Memory is sampled every "
        "250 ms: the worker's RSS summed over its processes, and the Redis server's "
        "`used_memory` (the whole server, shared with other work on this machine). One run.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| runs committed | {b['committed']:,} |",
        f"| tick (all runs committed, first slots handed over) | {b['tick_seconds']:.2f} s |",
        f"| runs the worker finished per second: during the tick / during the busy INSERTs | "
        f"{b['runs_finished_per_second_in_tick']:.0f} / "
        f"{b['runs_finished_per_second_in_busy_insert']:.0f} |",
        f"| bare bulk INSERT, client (execute_values, pages of 5,000), worker draining | "
        f"{b['bare_insert_client_busy_seconds']:.2f} s "
        f"(tick {b['ratio_to_client_insert_busy']:.2f}x) |",
        f"| bare bulk INSERT, server (INSERT ... SELECT), worker draining | "
        f"{b['bare_insert_server_busy_seconds']:.2f} s "
        f"(tick {b['ratio_to_server_insert_busy']:.2f}x) |",
        f"| bare bulk INSERT, client, idle machine | "
        f"{b['bare_insert_client_seconds']:.2f} s (tick {b['ratio_to_client_insert']:.2f}x) |",
        f"| bare bulk INSERT, server, idle machine | "
        f"{b['bare_insert_server_seconds']:.2f} s (tick {b['ratio_to_server_insert']:.2f}x) |",
        f"| alone: tick with no worker running | {b['alone']['tick_seconds']:.2f} s |",
        f"| alone: bare bulk INSERT, client / server, after it | "
        f"{b['alone']['bare_insert_client_seconds']:.2f} s "
        f"(tick {b['alone']['ratio_to_client_insert']:.2f}x) / "
        f"{b['alone']['bare_insert_server_seconds']:.2f} s "
        f"(tick {b['alone']['ratio_to_server_insert']:.2f}x) |",
        f"| first run started after T | {b['first_run_started_seconds']:.2f} s |",
        f"| worker RSS, all processes: before T / peak | {b['worker_rss_mb_before']:.0f} / "
        f"{b['worker_rss_mb_peak']:.0f} MB |",
        f"| Redis used_memory: before T / peak | {b['redis_used_memory_mb_before']:.1f} / "
        f"{b['redis_used_memory_mb_peak']:.1f} MB |",
        f"| broker queue depth max | {b['broker_depth_max']} |",
        "",
    ]
    if "burst_memory.png" in images:
        lines += ["![burst_memory.png](burst_memory.png)", ""]
    return lines


def _peers_e2e_section(results: dict[str, Any], images: list[str]) -> list[str]:
    e2e = results.get("peers_e2e")
    if not e2e:
        return []
    lines = [
        "## End to end: this service, celery beat, celery-redbeat, bare Celery (`bench.peers_e2e`)",
        "",
        "The same N schedules due at the same instant T, each feeding a Celery worker with the "
        "same settings (prefork, concurrency 8, prefetch 1, late acks, queue `runs`, same "
        "Redis), timed from T until the last run has finished. Ours: the product's worker "
        "running the `echo` handler, `MAX_RUNNING` = per-tenant = 8, our tick at T. The "
        "beats: as in the side-by-side above, feeding a worker whose `run_trigger` is a no-op "
        "that counts itself done in Redis. *Bare Celery*: no scheduler, N messages published "
        "at T to that same no-op worker, the ceiling for run throughput. Workers are warm "
        "before T. Ours and bare Celery, the two sides of the throughput ratio, run "
        f"{e2e.get('ceiling_repeat', e2e.get('repeat', 1))} times at each N, the beats "
        f"{e2e.get('repeat', 1)}; figures are medians. "
        "*Ratio*: the peer's time over ours (above 1: ours is faster). A peer whose "
        "rate at the smaller N projects past 2/3 of the cap "
        f"({e2e['timeout_seconds']:.0f} s) is not run at the larger N.",
        "",
        "| N | scheduler | runs | time to last finish (s) | runs/s | ratio to ours |",
        "|---:|---|---:|---|---|---:|",
    ]
    for row in e2e["rows"]:
        head = f"| {row['n']:,} | {row['label']} |"
        if row.get("skipped"):
            lines.append(f"{head} 0 | not run (projected past the cap) | | |")
            continue
        if not row.get("finished"):
            lines.append(
                f"{head} 1 | **not finished in {row['timeout_seconds']:.0f} s** "
                f"({row['done']:,} done) | | > {row.get('time_ratio_at_least', 0):.1f}x |"
            )
            continue
        ratio = f"{row['time_ratio']:.2f}x" if "time_ratio" in row else ""
        lines.append(
            f"{head} {len(row['samples'])} | {fmt(row['seconds'])} "
            f"| {fmt(row['runs_per_second'], 0)} | {ratio} |"
        )
    lines.append("")
    if "peers_e2e.png" in images:
        lines += ["![peers_e2e.png](peers_e2e.png)", ""]
    return lines


def _tenants_section(results: dict[str, Any], images: list[str]) -> list[str]:
    t = results.get("tenants")
    if not t:
        return []
    lines = [
        "## Many tenants waiting (`bench.many_tenants`)",
        "",
        "Admission chooses among the tenants with a waiting run. Migration 0010 finds them by "
        "a walk of the waiting room in fire order that stops once it has met as many tenants "
        "as the free slots can use; before it (0009), a round listed every waiting tenant, one "
        "index probe each. *Round*: one call of `scheduler_admission_round` (head's: its _v2) with "
        f"{t['rounds'][0]['waiting_runs']:,} runs waiting over N tenants, six of them with a "
        "run in progress, eight slots free; both definitions on the same rows, in turn, "
        f"{t['rounds'][0]['rounds']} calls each. *End to end*: `bench.e2e_lag` (one worker, "
        "concurrency 8, `MAX_RUNNING` = 8), the runs due at once, one per tenant, and over 10 "
        "tenants (head only: the runner calls functions that 0009 does not have).",
        "",
        "| tenants waiting | round p50 (ms), walk (0010) | p90 | every tenant (0009) | p90 "
        "| 0009 over 0010 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(r["function"], r["tenants"]): r for r in t["rounds"]}
    for n in sorted({r["tenants"] for r in t["rounds"]}):
        new, old = by[("walk (0010)", n)], by[("every tenant (0009)", n)]
        lines.append(
            f"| {n:,} | {new['p50_ms']:.2f} | {new['p90_ms']:.2f} | {old['p50_ms']:.2f} "
            f"| {old['p90_ms']:.2f} | {old['p50_ms'] / new['p50_ms']:.1f}x |"
        )
    wide = t.get("wide") or []
    if wide:
        figures = ", ".join(f"{r['function']} {r['p50_ms']:.1f} ms" for r in wide)
        lines.append(
            f"\nA round that fills {wide[0]['free_slots']:,} free slots with "
            f"{wide[0]['tenants']:,} tenants waiting (rolled back, so that each call sees the "
            f"same rows; median of several calls): {figures}."
        )
    lines += [
        "",
        "| runs | tenants | admission round | lag p50 (s) | p99 (s) | runs/s |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in t["e2e"]:
        lines.append(
            f"| {r['runs']:,} | {r['tenants']:,} | {r['function']} | {r['lag_p50']:.2f} "
            f"| {r['lag_p99']:.2f} | {r['runs_per_second']:.0f} |"
        )
    lines.append("")
    if "tenants_rounds.png" in images:
        lines += ["![tenants_rounds.png](tenants_rounds.png)", ""]
    return lines
