"""Noisy neighbour: `python -m bench.noisy_neighbour [--backlog 2000] [--small 20]`.

The shape of issue 12's measurement: one `celery -A tasks worker` (prefork, concurrency 8),
`MAX_RUNNING=6`, `MAX_RUNNING_PER_TENANT=5`. Tenant A has `--backlog` runs due at the same
instant T, each sleeping 0.1 s; `--small` other tenants have one run each, due a second
later (inserted then, with the hand-off their dispatch batch would do). Prints:

- the small tenants' start lag (started_at - scheduled_for): p50, p99, max;
- A's drain time against the ideal (backlog x 0.1 s / 5 slots);
- broker publishes of `run_trigger` per run (Redis MONITOR on the benchmark's logical
  database), and the broker queue depth sampled every 100 ms (its maximum).

Runs waiting in PostgreSQL and admitted only into free slots should give a flat small-tenant
lag whatever the backlog, about one publish per run, and a queue no deeper than
MAX_RUNNING.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import redis
from psycopg2.extras import execute_values

from bench import common
from bench.e2e_lag import percentile, start_worker

MAX_RUNNING, PER_TENANT, CONCURRENCY, SLEEP = 6, 5, 8, 0.1
INSERT_TRIGGER = (
    "INSERT INTO triggers (id, tenant_id, name, run_at, enabled, action, payload) VALUES %s"
)
INSERT_RUN = (
    "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, idempotency_key) VALUES %s"
)


def insert_runs(url: str, tenant: str, count: int, *, due: datetime) -> None:
    """`count` one-time triggers of `tenant` due at `due` with their pending runs (what a
    dispatch batch leaves behind)."""
    action = json.dumps({"type": "task", "name": "echo"})
    payload = json.dumps({"sleep_seconds": SLEEP})
    triggers = [(str(uuid.uuid4()), tenant) for _ in range(count)]
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            execute_values(
                cur,
                INSERT_TRIGGER,
                [(t, tenant, "noisy", due, False, action, payload) for t, tenant in triggers],
                page_size=5000,
            )
            execute_values(
                cur,
                INSERT_RUN,
                [
                    (str(uuid.uuid4()), t, tenant, due, "manual", f"{t}:{n}")
                    for n, (t, tenant) in enumerate(triggers)
                ],  # fmt: skip
                page_size=5000,
            )
        conn.commit()
    finally:
        conn.close()


class Broker:
    """Counts run_trigger publishes (MONITOR) and samples the queue depth every 100 ms."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.publishes = 0
        self.depths: list[int] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._monitor, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]

    def __enter__(self) -> Broker:
        for thread in self._threads:
            thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.client.ping()  # wakes the monitor up

    def _monitor(self) -> None:
        with self.client.monitor() as monitor:
            for command in monitor.listen():
                if self._stop.is_set():
                    return
                if command.get("db") == self.db and command["command"].startswith("LPUSH runs"):
                    self.publishes += 1

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.depths.append(int(self.client.llen("runs")))


def run_once(backlog: int, small: int, redis_url: str) -> dict[str, Any]:
    redis.Redis.from_url(redis_url).delete("runs")
    with common.fresh_database("sched_bench_noisy") as url:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "BROKER_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "MAX_RUNNING": str(MAX_RUNNING),
            "MAX_RUNNING_PER_TENANT": str(PER_TENANT),
        }
        os.environ.update({"DATABASE_URL": url, "REDIS_URL": redis_url, "BROKER_URL": redis_url})
        from app import admission, config, db

        config.set_settings(None)
        db.dispose_engines()
        from tasks import celery, publish
        from tasks.celery_app import use_broker

        use_broker(celery, redis_url)
        limits = admission.Limits(max_running=MAX_RUNNING, max_per_tenant=PER_TENANT)

        def hand_off() -> None:
            admission.hand_off(db.get_engine(), limits, publish.enqueue_runs)

        with tempfile.NamedTemporaryFile("w+b", suffix=".log") as log:
            worker = start_worker(env, CONCURRENCY, log)
            try:
                time.sleep(3)  # the pool imports and connects
                due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
                insert_runs(url, "tenant-a", backlog, due=due)
                with Broker(redis_url) as broker:
                    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
                    hand_off()
                    later = due + timedelta(seconds=1)
                    time.sleep(max(0.0, (later - datetime.now(UTC)).total_seconds()))
                    for n in range(small):
                        insert_runs(url, f"small-{n}", 1, due=later)
                        hand_off()
                    _wait_done(url, backlog + small, timeout=backlog * SLEEP + 120)
                return _figures(url, backlog, small, due, later, broker)
            finally:
                worker.terminate()
                worker.wait(timeout=30)


def _wait_done(url: str, count: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _query(url, "SELECT count(*) FROM runs WHERE finished_at IS NOT NULL")[0][0] >= count:
            return
        time.sleep(0.2)
    raise SystemExit(f"runs not finished within {timeout} s")


def _query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def _figures(url, backlog, small, due, later, broker: Broker) -> dict[str, Any]:
    lags = [float(r[0]) for r in _query(
        url, "SELECT EXTRACT(EPOCH FROM started_at - scheduled_for) FROM runs "
        "WHERE tenant_id LIKE 'small-%%'")]  # fmt: skip
    [(last_a,)] = _query(url, "SELECT max(finished_at) FROM runs WHERE tenant_id = 'tenant-a'")
    drain = (last_a - due).total_seconds()
    ideal = backlog * SLEEP / PER_TENANT
    return {
        "backlog": backlog,
        "small_tenants": small,
        "small_lag_p50": round(percentile(lags, 50), 3),
        "small_lag_p99": round(percentile(lags, 99), 3),
        "small_lag_max": round(max(lags), 3),
        "a_drain_seconds": round(drain, 2),
        "a_drain_ideal_seconds": round(ideal, 2),
        "a_drain_over_ideal": round(drain / ideal, 3),
        "publishes_per_run": round(broker.publishes / (backlog + small), 3),
        "broker_depth_max": max(broker.depths, default=0),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=2000)
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--redis-url", default=common.bench_redis_url())
    args = parser.parse_args(argv)
    figures = run_once(args.backlog, args.small, args.redis_url)
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    return figures


if __name__ == "__main__":
    main()
