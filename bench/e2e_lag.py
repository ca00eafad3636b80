"""End-to-end run lag: `python -m bench.e2e_lag [--runs 1000] [--concurrency 8]`.

1,000 one-time triggers due at the same instant T with the `echo` handler and one
`celery -A tasks worker` process (prefork, concurrency 8) on a fresh database, with
MAX_RUNNING = MAX_RUNNING_PER_TENANT = the concurrency. At T one hand-off admits the first
runs into the free slots, as the dispatcher's tick does after its commit, and each finishing
run hands its slot on (`--dispatch` runs the real dispatcher tick at T instead). Reports
the lag from `scheduled_for` to `started_at` (p50, p95, p99, max) and runs per second from
T to the last `finished_at`. Targets (issue 5): p99 under 5 s, at least 200 runs/s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import redis
from sqlalchemy import text

from bench import common
from tests import factories

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")
WARMUP_RUNS = 16


def insert_due(
    url: str, count: int, *, due: datetime, with_runs: bool, tenants: int = 10
) -> list[str]:
    """`count` one-time echo triggers of `tenants` tenants due at `due`; with their pending
    runs unless the real dispatcher is to create them. Returns the run ids (empty without
    runs)."""
    common.insert_triggers(url, count, next_run_at=due, cron=None, run_at=due, tenants=tenants)
    if not with_runs:
        return []
    key = due.astimezone(UTC).isoformat().replace("+00:00", "Z")
    with factories.transaction(url) as conn:
        # What a dispatch leaves behind: the runs, and the one-time triggers disabled.
        run_ids = factories.make_runs_for_triggers(
            conn, scheduled_for=due, key_suffix=key, where="t.run_at = :due", due=due
        )
        conn.execute(
            text("UPDATE triggers SET enabled = false, next_run_at = NULL WHERE run_at = :due"),
            {"due": due},
        )
    # A tick that commits this many runs refreshes their statistics (app/dispatch.py,
    # _refresh_statistics): so does this stand-in for it.
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE runs")
    return [str(run_id) for run_id in run_ids]


def finished(conn, due: datetime) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM runs WHERE scheduled_for = %s AND finished_at IS NOT NULL",
            (due,),
        )
        return cur.fetchone()[0]


def wait_finished(url: str, due: datetime, count: int, timeout: float) -> None:
    """Wait until `count` runs due at `due` have finished, looking every 0.25 s on one
    connection (a connection per look would cost PostgreSQL a backend start each time, CPU
    taken from the runs being measured; the figures come from the rows' own timestamps)."""
    deadline = time.monotonic() + timeout
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        while (done := finished(conn, due)) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {done} of {count} runs finished in {timeout} s")
            time.sleep(0.25)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def measure(url: str, due: datetime, count: int) -> dict[str, float]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT EXTRACT(EPOCH FROM started_at - scheduled_for), status, finished_at "
                "FROM runs WHERE scheduled_for = %s",
                (due,),
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    lags = [float(lag) for lag, _, _ in rows]
    statuses = {s for _, s, _ in rows}
    last = max(f for _, _, f in rows)
    elapsed = (last - due).total_seconds()
    return {
        "runs": len(rows),
        "statuses": ",".join(sorted(statuses)),
        "lag_p50": percentile(lags, 50),
        "lag_p95": percentile(lags, 95),
        "lag_p99": percentile(lags, 99),
        "lag_max": max(lags),
        "seconds": elapsed,
        "runs_per_second": count / elapsed,
    }


def start_worker(env: dict[str, str], concurrency: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [CELERY, "-A", "tasks", "worker", "-Q", "runs", "-P", "prefork", "-c", str(concurrency)]
        + ["-n", "bench@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        + ["--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_once(
    count: int,
    concurrency: int,
    redis_url: str,
    *,
    dispatch: bool,
    max_running: int | None = None,
    tenants: int = 10,
    revision: str = "head",
) -> dict:
    """One measurement; `revision`: the migration the database is brought to (a figure for
    the same code on an earlier schema, bench.many_tenants)."""
    client = redis.Redis.from_url(redis_url)
    client.delete("runs")
    with common.fresh_database("sched_bench_e2e", revision) as url:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "MAX_RUNNING": str(max_running or concurrency),
            "MAX_RUNNING_PER_TENANT": str(max_running or concurrency),
        }
        os.environ.update({"DATABASE_URL": url, "REDIS_URL": redis_url})
        from app import config, db

        config.set_settings(None)
        db.dispose_engines()
        from app import admission
        from tasks import celery, publish
        from tasks.celery_app import use_broker

        slots = max_running or concurrency
        limits = admission.Limits(max_running=slots, max_per_tenant=slots)

        def hand_off() -> None:
            admission.hand_off(db.get_engine(), limits, publish.enqueue_runs)

        use_broker(celery, redis_url)
        with tempfile.NamedTemporaryFile("w+b", suffix=".log") as log:
            worker = start_worker(env, concurrency, log)
            try:
                # Warm up: every pool process has imported, connected and run once.
                warm = datetime.now(UTC) - timedelta(seconds=1)
                insert_due(url, WARMUP_RUNS, due=warm, with_runs=True)
                hand_off()
                wait_finished(url, warm, WARMUP_RUNS, timeout=60)

                due = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
                run_ids = insert_due(url, count, due=due, with_runs=not dispatch, tenants=tenants)
                time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
                started = time.perf_counter()
                if dispatch:
                    from app import dispatch as dispatcher

                    stats = dispatcher.run_tick(
                        db.get_engine(),
                        now=datetime.now(UTC),
                        release_id=config.get_settings().release_id,
                        publish=publish.enqueue_runs,
                        options=dispatcher.TickOptions(batch_size=count, limits=limits),
                    )
                    assert stats.dispatched == count, stats
                else:
                    assert run_ids
                    hand_off()
                hand_off = time.perf_counter() - started
                wait_finished(url, due, count, timeout=300)
            finally:
                os.killpg(worker.pid, signal.SIGTERM)
                usage = _reap(worker)
                db.dispose_engines()
        result = measure(url, due, count)
    client.close()
    result["hand_off_seconds"] = hand_off
    # The whole worker (parent and pool, warm-up included): where the CPU goes per run.
    result["worker_cpu_ms_per_run"] = 1000 * usage / (count + WARMUP_RUNS)
    return result


def _reap(worker: subprocess.Popen) -> float:
    """Wait for the stopped worker; return its CPU seconds, pool processes included."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(worker.pid, os.WNOHANG)
        if pid:
            worker.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.1)
    os.killpg(worker.pid, signal.SIGKILL)
    _, _, usage = os.wait4(worker.pid, 0)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--dispatch", action="store_true", help="create the runs by a real tick")
    parser.add_argument(
        "--max-running",
        type=int,
        help="MAX_RUNNING and MAX_RUNNING_PER_TENANT (default: the concurrency); above it, "
        "admitted runs wait in the broker for a free pool process",
    )
    parser.add_argument(
        "--tenants", type=int, default=10, help="the runs' tenants, in turn (default 10)"
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args(argv)
    results: dict[str, object] = {"machine": common.machine(), "e2e_lag": []}
    for _ in range(args.repeat):
        row = run_once(
            args.runs,
            args.concurrency,
            args.redis_url,
            dispatch=args.dispatch,
            max_running=args.max_running,
            tenants=args.tenants,
        )
        results["e2e_lag"].append(row)
        print(
            f"{row['runs']} runs of {args.tenants} tenants, concurrency {args.concurrency}:"
            f" lag p50 {row['lag_p50']:.3f} s,"
            f" p95 {row['lag_p95']:.3f} s, p99 {row['lag_p99']:.3f} s, max {row['lag_max']:.3f} s;"
            f" {row['runs_per_second']:.0f} runs/s ({row['seconds']:.2f} s, hand-off"
            f" {row['hand_off_seconds']:.2f} s); worker CPU {row['worker_cpu_ms_per_run']:.1f} ms"
            f"/run; statuses: {row['statuses']}",
            flush=True,
        )
    print(json.dumps(results, default=str))
    return results


if __name__ == "__main__":
    main()
