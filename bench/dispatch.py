"""Dispatcher throughput and memory: `python -m bench.dispatch --triggers N [N ...]`.

For each N: a fresh database with N due triggers, then one `python -m tasks.dispatch --once`
process, timed until every run is committed and enqueued in Redis. Prints triggers/second and
the dispatcher's peak RSS (the whole process: interpreter, Celery, drivers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import redis

from bench import common


def expressions_due_at(due: datetime) -> tuple[str, ...]:
    """A mix of expressions that all fire at `due` (a whole minute, UTC)."""
    m, h, dow = due.minute, due.hour, due.isoweekday() % 7
    return ("* * * * *", f"{m} * * * *", f"{m} {h} * * *", f"{m} {h} * * {dow}", f"{m}-59 * * * *")


def run_once(count: int, redis_url: str) -> dict[str, float]:
    due = datetime.now(UTC).replace(second=0, microsecond=0)
    with common.fresh_database() as url:
        common.insert_triggers(
            url, count, next_run_at=due, cron=None, expressions=expressions_due_at(due)
        )
        client = redis.Redis.from_url(redis_url)
        client.delete("runs")
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "DISPATCH_TIME_BUDGET_SECONDS": "600",
            "LOG_LEVEL": "WARNING",
        }
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "tasks.dispatch", "--once"], env=env, stdout=out, stderr=err
            )
            # This one child's own peak RSS (VmHWM: wait4's maxrss would include ours) and CPU.
            peak_rss_mb, cpu_seconds = common.wait_measured(proc)
            elapsed = time.perf_counter() - started
            out.seek(0)
            err.seek(0)
            if proc.returncode != 0:
                raise SystemExit(f"dispatch failed: {err.read()[-2000:]}")
            stats = json.loads(out.read().strip().splitlines()[-1])
        queued = client.llen("runs")
        client.delete("runs")
        client.close()
    # Every run committed; only those with a free slot (MAX_RUNNING) are in the broker.
    if stats["dispatched"] != count or queued != stats["enqueued"]:
        raise SystemExit(
            f"expected {count} runs committed, got {stats['dispatched']} "
            f"({stats['enqueued']} enqueued / {queued} queued): {stats}"
        )
    return {
        "seconds": elapsed,
        "tick_seconds": stats["duration_seconds"],
        "triggers_per_second": count / stats["duration_seconds"],
        "peak_rss_mb": peak_rss_mb,
        "cpu_seconds": cpu_seconds,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args(argv)
    results: dict[str, object] = {"machine": common.machine(), "dispatch": {}}
    for count in args.triggers:
        samples = [run_once(count, args.redis_url) for _ in range(args.repeat)]
        row = {key: common.summary([s[key] for s in samples]) for key in samples[0]}
        results["dispatch"][count] = row
        print(
            f"N={count:>7}: {row['triggers_per_second']['median']:>9.0f} triggers/s "
            f"(tick {row['tick_seconds']['median']:.2f} s, min {row['tick_seconds']['min']:.2f}"
            f", max {row['tick_seconds']['max']:.2f}); peak RSS "
            f"{row['peak_rss_mb']['median']:.1f} MB",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
