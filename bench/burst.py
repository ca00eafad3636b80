"""100,000 triggers due at one instant: `python -m bench.burst [--triggers 100000]`.

A fresh database with N cron triggers (bench.dispatch's mix of five expressions, ten
tenants) all due at T; the product's worker (`celery -A tasks worker`, prefork, concurrency
8, MAX_RUNNING = MAX_RUNNING_PER_TENANT = 8) running and warm; one dispatch tick at T in a
process started beforehand (bench.peer_process `ours`, the tick's time budget lifted so one
tick takes all). Reports:

- the tick's duration: all N runs committed (and the first admitted runs handed over);
- the same N run rows (id, trigger, tenant, scheduled_for, kind, idempotency key) inserted
  by a bare bulk INSERT into an empty copy of the runs table (same columns, defaults,
  indexes and constraints), in the same database, from the client in pages of 5,000
  (psycopg2 execute_values, as an application would) and server-side (INSERT ... SELECT,
  the floor): right after the tick while the worker goes on draining the burst (the load
  the tick ran under), and again once the worker has stopped (idle); the tick's time over
  each;
- `alone`: the same tick in a second fresh database with no worker running, and the bare
  INSERTs after it: the dispatcher against the bare INSERT with nothing else running;
- the first run's start after T (min started_at - T; issue 12: <= 1 s);
- the worker's RSS (parent and pool processes, summed) and the Redis server's used_memory,
  sampled every 250 ms from before T until the tick is done, plus the broker queue depth.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import psycopg2
import redis
from psycopg2.extras import execute_values

from bench import common, peers, peers_e2e
from bench import dispatch as dispatch_bench

COPY = "CREATE TABLE {name} (LIKE runs INCLUDING ALL)"
COLUMNS = "id, trigger_id, tenant_id, scheduled_for, kind, idempotency_key"


class Sampler:
    """Worker RSS (parent + children), Redis used_memory and LLEN runs every 250 ms."""

    def __init__(self, worker_pid: int, client: redis.Redis) -> None:
        self.worker = psutil.Process(worker_pid)
        self.client = client
        self.samples: list[tuple[float, float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _rss(self) -> float:
        total = 0
        for proc in [self.worker, *self.worker.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            memory = self.client.info("memory")["used_memory"] / 2**20
            self.samples.append((time.time(), self._rss(), memory, self.client.llen("runs")))
            self._stop.wait(0.25)


def _bare_inserts(url: str, label: str) -> dict[str, float]:
    """The tick's run rows into two empty copies of `runs` (tables suffixed `label`), from
    the client and server-side; the seconds of each, and how many runs the product's worker
    finished meanwhile (its load on the machine, when it is still draining the burst)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {COLUMNS} FROM runs WHERE kind <> 'manual'")
            rows = cur.fetchall()
            cur.execute(COPY.format(name=f"runs_bare_client_{label}"))
            cur.execute(COPY.format(name=f"runs_bare_server_{label}"))
            conn.commit()
            finished_before = _finished(cur)
            started = time.perf_counter()
            execute_values(
                cur,
                f"INSERT INTO runs_bare_client_{label} ({COLUMNS}) VALUES %s",
                rows,
                page_size=5000,
            )
            conn.commit()
            client_seconds = time.perf_counter() - started
            started = time.perf_counter()
            cur.execute(
                f"INSERT INTO runs_bare_server_{label} ({COLUMNS}) SELECT {COLUMNS} FROM runs "
                "WHERE kind <> 'manual'"
            )
            conn.commit()
            server_seconds = time.perf_counter() - started
            finished = _finished(cur) - finished_before
    finally:
        conn.close()
    return {
        "rows": len(rows),
        "client_seconds": client_seconds,
        "server_seconds": server_seconds,
        "runs_finished_per_second": finished / (client_seconds + server_seconds),
    }


def _finished(cur: Any) -> int:
    cur.execute("SELECT count(*) FROM runs WHERE finished_at IS NOT NULL")
    (count,) = cur.fetchone()
    return int(count)


def run_once(count: int, redis_url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    common.clean_redis(client)
    due = (datetime.now(UTC) + timedelta(minutes=15)).replace(second=0, microsecond=0)
    env = _env(redis_url)
    with common.fresh_database("sched_bench_burst") as url:
        expressions = dispatch_bench.expressions_due_at(due)
        common.insert_triggers(url, count, next_run_at=due, cron=None, expressions=expressions)
        env["DATABASE_URL"] = url
        with tempfile.TemporaryFile("w+b") as log, tempfile.TemporaryFile("w+") as err:
            worker = peers_e2e._worker("ours", env, log)
            proc = None
            try:
                time.sleep(2)
                peers_e2e._warm_up("ours", env, client)
                command = [sys.executable, "-m", "bench.peer_process", "ours", str(count)]
                command += [due.isoformat(), redis_url, tempfile.gettempdir()]
                proc = subprocess.Popen(
                    command, cwd=peers.ROOT, env=env, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=err, text=True,
                )  # fmt: skip
                peers._wait_ready(proc, timeout=900)
                with Sampler(worker.pid, client) as sampler:
                    time.sleep(1.0)
                    due_at = time.time() + 1.0
                    proc.stdin.write(f"{due_at!r}\n")
                    proc.stdin.flush()
                    stats = json.loads(proc.stdout.readline())
                    tick_done = time.time()
                    finished_in_tick = peers_e2e._query_all(
                        url, "SELECT count(*) FROM runs WHERE finished_at IS NOT NULL"
                    )[0][0]
                    # The same rows by a bare INSERT under the tick's conditions: the
                    # worker still draining the burst (minutes of runs are left).
                    busy = _bare_inserts(url, "busy")
                    time.sleep(1.0)
                peers._stop(proc, gentle=True)
                proc = None
            except BaseException:
                err.seek(0)
                log.seek(0)
                raise RuntimeError(
                    f"burst N={count}: {err.read()[-2000:]} {log.read()[-3000:]!r}"
                ) from None
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
        [(first_started, committed)] = peers_e2e._query_all(
            url,
            "SELECT EXTRACT(EPOCH FROM min(started_at)), count(*) FROM runs WHERE kind <> 'manual'",
        )
        bare = _bare_inserts(url, "idle")  # the worker stopped: the machine is idle
    common.clean_redis(client)
    client.close()
    before = [s for s in sampler.samples if s[0] < due_at]
    during = [s for s in sampler.samples if s[0] >= due_at]
    tick = float(stats["duration_seconds"])
    return {
        "n": count,
        "committed": int(committed),
        "dispatched": stats["dispatched"],
        "tick_seconds": tick,
        "tick_wall_seconds": tick_done - due_at,
        "runs_finished_per_second_in_tick": int(finished_in_tick) / tick,
        "bare_insert_client_seconds": bare["client_seconds"],
        "bare_insert_server_seconds": bare["server_seconds"],
        "ratio_to_client_insert": tick / bare["client_seconds"],
        "ratio_to_server_insert": tick / bare["server_seconds"],
        "bare_insert_client_busy_seconds": busy["client_seconds"],
        "bare_insert_server_busy_seconds": busy["server_seconds"],
        "ratio_to_client_insert_busy": tick / busy["client_seconds"],
        "ratio_to_server_insert_busy": tick / busy["server_seconds"],
        "runs_finished_per_second_in_busy_insert": busy["runs_finished_per_second"],
        "first_run_started_seconds": float(first_started) - due_at if first_started else None,
        "worker_rss_mb_before": max(s[1] for s in before),
        "worker_rss_mb_peak": max(s[1] for s in during),
        "redis_used_memory_mb_before": max(s[2] for s in before),
        "redis_used_memory_mb_peak": max(s[2] for s in during),
        "broker_depth_max": max(s[3] for s in during),
        "series": [
            (round(t - due_at, 2), round(rss, 1), round(mem, 2), depth)
            for t, rss, mem, depth in sampler.samples
        ],
    }


def tick_alone(count: int, redis_url: str) -> dict[str, float]:
    """The same tick with no worker running, then the bare INSERTs (idle machine both): the
    dispatcher against the bare INSERT with nothing else on the machine."""
    client = redis.Redis.from_url(redis_url)
    common.clean_redis(client)
    due = (datetime.now(UTC) + timedelta(minutes=15)).replace(second=0, microsecond=0)
    with common.fresh_database("sched_bench_burst") as url:
        expressions = dispatch_bench.expressions_due_at(due)
        common.insert_triggers(url, count, next_run_at=due, cron=None, expressions=expressions)
        with tempfile.TemporaryFile("w+") as err:
            command = [sys.executable, "-m", "bench.peer_process", "ours", str(count)]
            command += [due.isoformat(), redis_url, tempfile.gettempdir()]
            proc = subprocess.Popen(
                command, cwd=peers.ROOT, env={**_env(redis_url), "DATABASE_URL": url},
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip
            try:
                peers._wait_ready(proc, timeout=900)
                proc.stdin.write(f"{time.time() + 1.0!r}\n")
                proc.stdin.flush()
                stats = json.loads(proc.stdout.readline())
                peers._stop(proc, gentle=True)
            except BaseException:
                proc.kill()
                proc.wait()
                err.seek(0)
                raise RuntimeError(f"burst alone N={count}: {err.read()[-2000:]}") from None
        bare = _bare_inserts(url, "idle")
    common.clean_redis(client)
    client.close()
    tick = float(stats["duration_seconds"])
    return {
        "tick_seconds": tick,
        "bare_insert_client_seconds": bare["client_seconds"],
        "bare_insert_server_seconds": bare["server_seconds"],
        "ratio_to_client_insert": tick / bare["client_seconds"],
        "ratio_to_server_insert": tick / bare["server_seconds"],
    }


def _env(redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(peers.ROOT),
        "REDIS_URL": redis_url,
        "BROKER_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "MAX_RUNNING": str(peers_e2e.CONCURRENCY),
        "MAX_RUNNING_PER_TENANT": str(peers_e2e.CONCURRENCY),
        "DISPATCH_TIME_BUDGET_SECONDS": "600",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=100_000)
    parser.add_argument("--redis-url", default=common.bench_redis_url())
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = run_once(args.triggers, args.redis_url)
    result["alone"] = tick_alone(args.triggers, args.redis_url)
    print(json.dumps({k: v for k, v in result.items() if k != "series"}), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out)
    return result


if __name__ == "__main__":
    main()
