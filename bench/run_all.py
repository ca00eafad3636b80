"""Every benchmark, one report: `python -m bench.run_all [--quick] [--pre DIR] [--only STEP ...]`.

1. Schedule engine (bench.schedule_bench), several processes.
2. Dispatcher at N = 1,000, 10,000, 100,000 (bench.dispatch.run_once, a fresh database each).
3. End-to-end lag of 1,000 runs due at once (bench.e2e_lag, through bench.e2e_runs).
4. API latency under gunicorn (bench.api_latency).
5. Time to queue N due messages against celery beat and celery-redbeat (bench.peers).
6. Noisy neighbour on the real web, worker, scheduler and beat processes (bench.noisy_neighbour),
   and with `--pre DIR` the same file run on the pre-admission code checked out in DIR.
7. 100,000 triggers due at one instant against a bare bulk INSERT (bench.burst).
8. End to end against celery beat, celery-redbeat and bare Celery (bench.peers_e2e).
9. Admission with many tenants waiting, before and after migration 0010 (bench.many_tenants).
10. Small tenants due at the same instant as a burst, with fair dispatch and before it
   (bench.noisy_neighbour --same-instant, the old code checked out in a worktree).
11. What PostgreSQL pays per run over a 10,000-run drain (bench.per_run_cost, `cost`), and
   admission's ceiling with 1-8 finishers and no Celery (bench.finishers, `finishers`).
12. bench/results/results.json, REPORT.md and the PNG plots (bench.report, bench.plots).

Every figure is the median of the runs with their min and max. Redis traffic goes to
logical database BENCH_REDIS_DB (15) of REDIS_URL; databases are created on DATABASE_URL's
server and dropped afterwards. The full run takes about 25 minutes on 2 cores.

`--quick` is a smoke run (small N, one run each, a few minutes) written to
bench/results/quick/ (ignored by git), so it never replaces the committed report.
`--only STEP ...` runs some steps and keeps the others' figures from the saved results.json
(the report then says which steps ran when). `--report-only` redraws the report and plots
from the saved results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import redis

from bench import common, dispatch, peers, plots, report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

# Sized to fit about 25 minutes on 2 shared cores (issue 12 added four benchmarks).
FULL = {
    "schedule_runs": 3,
    "dispatch": {1000: 3, 10_000: 3, 100_000: 1},
    "e2e": {"runs": 1000, "concurrency": 8, "repeat": 2},
    "api": {"triggers": 10_000, "requests": 2000, "repeat": 1},
    "peers": {"counts": [1000, 10_000], "repeat": 1, "repeat_large": 1, "timeout": 60},
    "noisy": {"drain": [1000], "backlogs": [10_000, 50_000], "pre": [1000, 2000]},
    "burst": 100_000,
    "peers_e2e": {"counts": [1000, 10_000], "repeat": 1, "ceiling_repeat": 3, "timeout": 150},
    "tenants": {"runs": 5000},
    "fair": [1000, 10_000, 100_000],
    "cost": 10_000,
    "finishers": {"counts": [1, 2, 4, 8], "runs": 3000},
}
QUICK = {
    "schedule_runs": 1,
    "dispatch": {1000: 1, 10_000: 1},
    "e2e": {"runs": 200, "concurrency": 8, "repeat": 1},
    "api": {"triggers": 2000, "requests": 200, "repeat": 1},
    "peers": {"counts": [1000], "repeat": 1, "repeat_large": 1, "timeout": 60},
    "noisy": {"drain": [300], "backlogs": [1000], "pre": [300]},
    "burst": 10_000,
    "peers_e2e": {"counts": [500], "repeat": 1, "ceiling_repeat": 1, "timeout": 60},
    "tenants": {"runs": 1000},
    "fair": [1000],
    "cost": 1000,
    "finishers": {"counts": [1, 8], "runs": 500},
}
# The pre-admission code (issue 12's "before"): main just before admission landed.
PRE_ADMISSION_COMMIT = "293e245"
# The code before fair dispatch within a tick (issue 30's "before"), for the `fair` step.
PRE_FAIR_COMMIT = "d7a15f8"
PRE_FAIR = Path(tempfile.gettempdir()) / "scheduler-pre-fair"


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _python(module: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `python -m module args` from the repository root; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env or os.environ,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done.stdout


def _json_run(module: str, *args: str) -> Any:
    """Run a benchmark that writes its figures to `--json PATH`; return them."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        _python(module, *args, "--json", out.name)
        return json.loads(Path(out.name).read_text())


def schedule_engine(runs: int) -> dict[str, Any]:
    samples = [_json_run("bench.schedule_bench", "--repeat", "1") for _ in range(runs)]
    shapes = {
        name: common.summary([s["shapes"][name]["per_100k"] for s in samples])
        for name in samples[0]["shapes"]
    }
    worst = common.summary([s["worst_per_100k"] for s in samples])
    say(f"schedule engine: worst shape {worst['median']:.3f} s per 100,000 instants")
    return {"runs": runs, "per_100k_seconds": shapes, "worst_per_100k_seconds": worst}


def dispatcher(plan: dict[int, int], redis_url: str) -> dict[str, Any]:
    rows = {}
    for count, runs in plan.items():
        samples = []
        for _ in range(runs):
            samples.append(dispatch.run_once(count, redis_url))
            last = samples[-1]
            say(
                f"dispatch N={count:,}: tick {last['tick_seconds']:.2f} s "
                f"({last['triggers_per_second']:,.0f}/s), process {last['seconds']:.2f} s, "
                f"peak RSS {last['peak_rss_mb']:.1f} MB"
            )
        row = {key: common.summary([s[key] for s in samples]) for key in samples[0]}
        rows[str(count)] = {**row, "n": count, "runs": runs, "samples": samples}
    return rows


def end_to_end(plan: dict[str, int]) -> dict[str, Any]:
    args = ["--runs", str(plan["runs"]), "--concurrency", str(plan["concurrency"])]
    lines = _python("bench.e2e_runs", *args, "--repeat", str(plan["repeat"])).splitlines()
    # e2e_lag's own JSON line (its results), then bench.e2e_runs' line with the raw lags.
    outputs = [json.loads(line) for line in lines if line.startswith("{")]
    runs = next(o["e2e_lag"] for o in outputs if "e2e_lag" in o)
    lags = next((o["lags"] for o in outputs if "lags" in o), [])
    for row in runs:
        say(
            f"e2e: p50 {row['lag_p50']:.2f} s, p99 {row['lag_p99']:.2f} s, "
            f"{row['runs_per_second']:.0f} runs/s"
        )
    keys = ("lag_p50", "lag_p95", "lag_p99", "lag_max", "runs_per_second", "seconds")
    summary = {key: common.summary([row[key] for row in runs]) for key in keys}
    return {**plan, "samples": runs, "summary": summary, "lags": lags}


def api(plan: dict[str, int]) -> dict[str, Any]:
    samples = []
    for _ in range(plan["repeat"]):
        args = ["--triggers", str(plan["triggers"]), "--requests", str(plan["requests"])]
        samples.append(_json_run("bench.api_latency", *args))
        say(
            "api p99: "
            + ", ".join(f"{op} {samples[-1][op]['p99']:.1f} ms" for op in samples[-1])
            + " (p50: "
            + ", ".join(f"{op} {samples[-1][op]['p50']:.1f} ms" for op in samples[-1])
            + ")"
        )
    summary = {
        op: {
            stat: common.summary([s[op][stat] for s in samples])
            for stat in ("p50", "p90", "p95", "p99", "max")
        }
        for op in samples[0]
    }
    return {**plan, "samples": samples, "summary": summary}


def noisy(plan: dict[str, list[int]], pre: Path | None) -> dict[str, Any]:
    """Noisy neighbour at each backlog (the smallest drained), and the same on `pre`."""
    rows = _json_run("bench.noisy_neighbour", "--backlog", *map(str, plan["drain"]), "--drain")
    rows += _json_run("bench.noisy_neighbour", "--backlog", *map(str, plan["backlogs"]))
    for row in rows:
        say(_noisy_line("admission", row))
    out: dict[str, Any] = {"rows": rows, "pre_commit": None, "pre_rows": []}
    if pre is not None:
        out["pre_commit"] = _git(pre, "rev-parse", "--short", "HEAD")
        pre_rows = _pre_noisy(pre, ["--backlog", *map(str, plan["pre"])])
        for row in pre_rows:
            say(_noisy_line(f"pre-admission {out['pre_commit']}", row))
        out["pre_rows"] = pre_rows
    return out


def fair(backlogs: list[int]) -> dict[str, Any]:
    """Small tenants due at the same instant as A's burst (noisy_neighbour --same-instant),
    on this code and on the code before fair dispatch (PRE_FAIR_COMMIT), one after the
    other in this run."""
    if not PRE_FAIR.exists():
        subprocess.run(["git", "worktree", "add", str(PRE_FAIR), PRE_FAIR_COMMIT], cwd=ROOT,
                       check=True)  # fmt: skip
    args = ("--same-instant", "--backlog", *map(str, backlogs))
    rows = _json_run("bench.noisy_neighbour", *args)
    before = _pre_noisy(PRE_FAIR, list(args), drain=False)
    for label, table in (("fair dispatch", rows), (f"before {PRE_FAIR_COMMIT}", before)):
        for row in table:
            say(
                f"same instant, {label}, A's burst {row['backlog']:,}: small tenants' lag p50 "
                f"{row['small_lag_p50']} s, p99 {row['small_lag_p99']} s, max "
                f"{row['small_lag_max']} s; A dispatched in {row['a_dispatch_seconds']} s"
            )
    return {"rows": rows, "pre_commit": PRE_FAIR_COMMIT, "pre_rows": before}


def _noisy_line(label: str, row: dict[str, Any]) -> str:
    drain = (
        f", A drained in {row['a_drain_seconds']} s (ideal {row['a_drain_ideal_seconds']} s)"
        if row["a_drain_seconds"]
        else ""
    )
    return (
        f"noisy {label} backlog {row['backlog']:,}: B lag p50 {row['small_lag_p50']} s, "
        f"p99 {row['small_lag_p99']} s, max {row['small_lag_max']} s{drain}; "
        f"{row['publishes_per_run']} publishes/run, queue depth max {row['broker_depth_max']}"
    )


def _git(where: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True)
    return done.stdout.strip()


def _pre_noisy(pre: Path, args: list[str], drain: bool = True) -> list[dict[str, Any]]:
    """bench.noisy_neighbour, this checkout's copy, run from an older checkout."""
    # With what they import that the older checkout may lack (the shared row factories).
    for name in ("bench/noisy_neighbour.py", "bench/common.py", "tests/factories.py"):
        (pre / name).write_text((ROOT / name).read_text())
    env = {**os.environ, "PYTHONPATH": str(pre)}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run(
            [sys.executable, "-m", "bench.noisy_neighbour", *args]
            + (["--drain"] if drain else [])
            + ["--json", out.name],
            cwd=pre,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pre-admission noisy neighbour failed: {done.stderr[-3000:]}")
        return json.loads(Path(out.name).read_text())


def servers(database_url: str, redis_url: str) -> dict[str, str]:
    """Versions of the PostgreSQL and Redis servers the benchmarks ran against."""
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            postgres = cur.fetchone()[0]
    finally:
        conn.close()
    client = redis.Redis.from_url(redis_url)
    try:
        redis_version = client.info("server")["redis_version"]
    finally:
        client.close()
    return {"postgresql_server": postgres, "redis_server": redis_version}


def code_version() -> dict[str, Any]:
    """The commit measured, and whether the product code had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "app", "tasks", "web", "migrations")
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "commit_subject": git("log", "-1", "--format=%s"),
        "uncommitted_product_changes": [line[3:] for line in changed.splitlines()],
    }


def burst(count: int) -> dict[str, Any]:
    row = _json_run("bench.burst", "--triggers", str(count))
    say(
        f"burst N={count:,}: tick {row['tick_seconds']:.2f} s, bare INSERT from the client "
        f"{row['bare_insert_client_busy_seconds']:.2f} s with the worker draining / "
        f"{row['bare_insert_client_seconds']:.2f} s idle, first run started "
        f"{row['first_run_started_seconds']:.2f} s after T"
    )
    return row


def peers_e2e(plan: dict[str, Any]) -> dict[str, Any]:
    args = ["--triggers", *map(str, plan["counts"]), "--repeat", str(plan["repeat"])]
    args += ["--ceiling-repeat", str(plan["ceiling_repeat"])]
    result = _json_run("bench.peers_e2e", *args, "--timeout", str(plan["timeout"]))
    for row in result["rows"]:
        figure = f"{row['seconds']['median']:.2f} s" if row.get("finished") else "not finished/run"
        say(f"end to end {row['label']} N={row['n']:,}: {figure}")
    return result


def many_tenants(plan: dict[str, int]) -> dict[str, Any]:
    result = _json_run("bench.many_tenants", "--runs", str(plan["runs"]))
    for row in result["rounds"]:
        say(f"round, {row['tenants']:,} tenants waiting, {row['function']}: "
            f"p50 {row['p50_ms']:.2f} ms")  # fmt: skip
    for row in result["wide"]:
        say(f"round filling {row['free_slots']:,} slots, {row['function']}: "
            f"p50 {row['p50_ms']:.1f} ms")  # fmt: skip
    for row in result["e2e"]:
        say(f"end to end, {row['runs']:,} runs of {row['tenants']:,} tenants, "
            f"{row['function']}: {row['runs_per_second']:.0f} runs/s")  # fmt: skip
    return result


def per_run_cost(runs: int) -> dict[str, Any]:
    row = _json_run("bench.per_run_cost", "--runs", str(runs))
    say(f"per run, {runs:,} runs: {row['wal_bytes_per_run']:.0f} WAL bytes, "
        f"{row['index_entries_per_run']:.1f} index entries, "
        f"{row.get('statements_per_run', 0):.1f} statements, "
        f"{row.get('pg_exec_ms_per_run', 0):.2f} ms of statements, "
        f"{row.get('pg_cpu_ms_per_run', 0):.2f} ms of PostgreSQL CPU")  # fmt: skip
    return row


def finishers(plan: dict[str, Any]) -> list[dict[str, Any]]:
    counts = [str(n) for n in plan["counts"]]
    rows = _json_run("bench.finishers", "--finishers", *counts, "--runs", str(plan["runs"]))
    for row in rows:
        say(f"finish_and_admit, {row['finishers']} finishers: {row['runs_per_second']} runs/s")
    return rows


def run(quick: bool, pre: Path | None = None, only: list[str] | None = None) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    redis_url = common.bench_redis_url()
    os.environ["REDIS_URL"] = redis_url  # the benchmarks started below inherit it
    database_url = os.environ.get("DATABASE_URL") or common.dbadmin.server_url()
    results: dict[str, Any] = {
        "quick": quick,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "machine": {
            **common.machine(),
            **servers(database_url, redis_url),
            "load_average_at_start": os.getloadavg(),
            "node": platform.node(),
        },
    }
    if only and (_folder(quick) / "results.json").exists():
        # A partial run: the other steps' figures stay as the last run left them.
        kept = json.loads((_folder(quick) / "results.json").read_text())
        results = {**kept, **{k: results[k] for k in ("code", "machine")}}
        first = kept["code"]["commit"]
        product = ("app", "tasks", "web", "migrations")
        same = subprocess.run(["git", "diff", "--quiet", first, "HEAD", "--", *product], cwd=ROOT)
        results.setdefault("partial_runs", []).append(
            {"steps": only, "at": datetime.now(UTC).isoformat(timespec="seconds"),
             "commit": results["code"]["commit"], "first_commit": first,
             "same_product_code": same.returncode == 0}
        )  # fmt: skip
    started = time.monotonic()
    steps = (
        ("schedule", lambda: schedule_engine(plan["schedule_runs"])),
        ("dispatch", lambda: dispatcher(plan["dispatch"], redis_url)),
        ("e2e", lambda: end_to_end(plan["e2e"])),
        ("api", lambda: api(plan["api"])),
        ("peers", lambda: peers.compare(redis_url=redis_url, say=say, **plan["peers"])),
        ("noisy", lambda: noisy(plan["noisy"], pre)),
        ("burst", lambda: burst(plan["burst"])),
        ("peers_e2e", lambda: peers_e2e(plan["peers_e2e"])),
        ("tenants", lambda: many_tenants(plan["tenants"])),
        ("fair", lambda: fair(plan["fair"])),
        ("cost", lambda: per_run_cost(plan["cost"])),
        ("finishers", lambda: finishers(plan["finishers"])),
    )
    for name, step in steps:
        if only and name not in only:
            continue
        say(f"{name}: starting")
        step_started = time.monotonic()
        results[name] = step()
        results.setdefault("step_at", {})[name] = datetime.now(UTC).isoformat(timespec="seconds")
        results.setdefault("step_seconds", {})[name] = round(time.monotonic() - step_started, 1)
        _save(results)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    if code_version()["commit"] != results["code"]["commit"]:
        # Commits landed while the benchmarks ran: the steps measured different code.
        results["code"]["commit_at_end"] = code_version()["commit"]
    results["total_seconds"] = round(time.monotonic() - started, 1)
    _save(results)
    return results


def _folder(quick: bool) -> Path:
    """bench/results, or for a smoke run bench/results/quick (ignored by git)."""
    if not quick:
        return RESULTS
    folder = RESULTS / "quick"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("*\n")
    return folder


def _save(results: dict[str, Any]) -> None:
    folder = _folder(results["quick"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument(
        "--report-only", action="store_true", help="redraw from the saved results.json"
    )
    parser.add_argument(
        "--pre",
        type=Path,
        help=f"a checkout of the pre-admission code ({PRE_ADMISSION_COMMIT}) to run the "
        "noisy-neighbour benchmark on too (made with `git worktree add` when absent)",
    )
    parser.add_argument("--only", nargs="+", help="run only these steps (a partial run)")
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((_folder(args.quick) / "results.json").read_text())
    else:
        if args.pre and not args.pre.exists():
            subprocess.run(
                ["git", "worktree", "add", str(args.pre), PRE_ADMISSION_COMMIT],
                cwd=ROOT,
                check=True,
            )
        results = run(args.quick, args.pre, args.only)
    folder = _folder(args.quick)
    images = plots.draw_all(results, folder)
    path = report.write(results, folder, images)
    say(f"wrote {path} and {len(images)} plots")
    print(report.headline_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
