"""Noisy neighbour: `python -m bench.noisy_neighbour [--backlog 2000 ...] [--small 20] [--drain]`.

Issue 12's measurement, on the real processes of a deployment (the Procfile's): gunicorn
serving `web:create_app()`, one `celery -A tasks worker -Q runs` (prefork, concurrency 8),
one scheduler worker (`-Q scheduler`, concurrency 1) and `celery -A tasks beat` ticking every
second (DISPATCH_INTERVAL_SECONDS=1), with MAX_RUNNING=6 and MAX_RUNNING_PER_TENANT=5.

1. Tenant A has `--backlog` one-time triggers due at the same instant T0, each run sleeping
   0.1 s (`echo` with `sleep_seconds`); they are inserted in bulk (a bulk load through the API
   would only take longer). The real tick dispatches them; we wait until every one of A's
   runs exists, so A now has a backlog of waiting runs.
2. `--small` other tenants (own API key each) then create one one-time trigger each through
   the web API, due at the next whole second but one (T1). The tick fires them.
3. B's start lag is `started_at - scheduled_for` of those runs: p50, p99, max. How many of
   A's runs were still waiting at T1 is printed too (B must be measured while A waits).
4. With `--drain`, A's drain time (T0 to A's last `finished_at`) against the ideal
   (backlog x 0.1 s / 5 slots); otherwise the processes are stopped once B is measured.

With `--same-instant` (docs/design.md section 17, dispatch's fairness within a tick), the
small tenants' triggers are created through the API before T0 and are due at T0 itself,
the instant of A's burst: B's lag then includes the tick that dispatches the burst. They
are created after A's rows, so they come last in due order and on disk, which is where a
tick that claims by due time alone put them (18 s behind 100,000).

Throughout, Redis MONITOR counts the `run_trigger` messages published (LPUSH to `runs`) and
the broker's queue (LLEN `runs`, plus the messages delivered but not yet acknowledged, HLEN
`unacked`) is sampled every 100 ms, with timestamps, for the plot.

The module uses only SQL, HTTP and the processes' command lines, not the product's Python
API (but for creating the API keys), so the same file measures an older commit: copy it into
that checkout's bench/ and run it from there (bench.run_all's `--pre` does that).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import redis
from psycopg2.extras import execute_values

from bench import common

ROOT = Path.cwd()
BIN = Path(sys.executable).parent
MAX_RUNNING, PER_TENANT, CONCURRENCY, SLEEP = 6, 5, 8, 0.1
INSERT_TRIGGER = """
    INSERT INTO triggers (id, tenant_id, name, run_at, next_run_at, enabled, action, payload)
    VALUES %s
"""


def insert_backlog(url: str, tenant: str, count: int, *, due: datetime) -> None:
    """`count` one-time triggers of `tenant` due at `due`, each run sleeping SLEEP."""
    action = json.dumps({"type": "task", "name": "echo"})
    payload = json.dumps({"sleep_seconds": SLEEP})
    rows = [
        (str(uuid.uuid4()), tenant, f"noisy-{n}", due, due, True, action, payload)
        for n in range(count)
    ]
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            execute_values(cur, INSERT_TRIGGER, rows, page_size=5000)
        conn.commit()
    finally:
        conn.close()


class Broker:
    """Counts run_trigger publishes (MONITOR) and samples the queue every 100 ms."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.publishes = 0
        self.other_publishes = 0
        self.samples: list[tuple[float, int, int]] = []  # (epoch, LLEN runs, HLEN unacked)
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
                text = command.get("command", "")
                if command.get("db") == self.db and text.startswith("LPUSH runs"):
                    if "run_trigger" in text:
                        self.publishes += 1
                    else:
                        self.other_publishes += 1

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            pipe = self.client.pipeline(transaction=False)
            pipe.llen("runs")
            pipe.hlen("unacked")
            depth, unacked = pipe.execute()
            self.samples.append((time.time(), int(depth), int(unacked)))


def _query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def _count(url: str, sql: str, params: tuple = ()) -> int:
    return int(_query(url, sql, params)[0][0])


def _wait(what: str, check, *, timeout: float, poll: float = 0.2) -> float:
    """Poll `check()` until true; return the epoch it became true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll)
    return time.time()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def start_stack(env: dict[str, str], port: int, log) -> list[subprocess.Popen]:
    """The Procfile's web, worker, scheduler and beat (tick every second)."""
    common_flags = ["--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
    celery = str(BIN / "celery")
    return [
        _start(
            [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2"]
            + ["--log-level", "warning", "web:create_app()"],
            env,
            log,
        ),
        _start(
            [celery, "-A", "tasks", "worker", "-Q", "runs", "-P", "prefork"]
            + ["-c", str(CONCURRENCY), "-n", "noisy-runs@%h", *common_flags],
            env,
            log,
        ),
        _start(
            [celery, "-A", "tasks", "worker", "-Q", "scheduler", "-c", "1"]
            + ["-n", "noisy-scheduler@%h", *common_flags],
            env,
            log,
        ),
        _start(
            [celery, "-A", "tasks", "beat", "--loglevel", "WARNING"]
            + ["--scheduler", "tasks.beat:MemoryScheduler"],
            env,
            log,
        ),
    ]


def stop_stack(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def create_keys(url: str, tenants: list[str]) -> dict[str, str]:
    """One API key per tenant (what `flask --app web keys create` does, without 20 starts)."""
    os.environ["DATABASE_URL"] = url
    from app import config, db, keys

    config.set_settings(None)
    db.dispose_engines()
    made = {}
    # An older checkout (the side by side's "before") has keys without principals.
    roles = {"principal": "bench", "role": "admin"}
    if "principal" not in inspect.signature(keys.create).parameters:
        roles = {}
    with db.session_scope(db.get_engine()) as session:
        for tenant in tenants:
            made[tenant] = keys.create(
                session, tenant_id=tenant, now=datetime.now(UTC), **roles
            ).key
    db.dispose_engines()
    return made


def _post_trigger(port: int, key: str, fire: datetime) -> None:
    body = {
        "name": "small",
        "run_at": fire.isoformat().replace("+00:00", "Z"),
        "action": {"type": "task", "name": "echo"},
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/triggers",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        if response.status != 201:
            raise RuntimeError(f"trigger create: HTTP {response.status}")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status < 500
    except OSError:
        return False


def run_once(
    backlog: int,
    small: int,
    redis_url: str,
    *,
    drain: bool,
    timeout: float = 300,
    same_instant: bool = False,
) -> dict[str, Any]:
    """One measurement at one backlog; see the module docstring."""
    client = redis.Redis.from_url(redis_url)
    common.clean_redis(client)
    with common.fresh_database("sched_bench_noisy") as url:
        port = _free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
            "BROKER_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "MAX_RUNNING": str(MAX_RUNNING),
            "MAX_RUNNING_PER_TENANT": str(PER_TENANT),
            "DISPATCH_INTERVAL_SECONDS": "1",
            # A's backlog is the point: the waiting-runs cap must not skip it.
            "MAX_WAITING_RUNS_PER_TENANT": str(max(10_000, 2 * backlog)),
        }
        small_tenants = [f"small-{n:02d}" for n in range(small)]
        keys = create_keys(url, small_tenants)
        with tempfile.NamedTemporaryFile("w+b", suffix=".log") as log:
            procs = start_stack(env, port, log)
            try:
                _wait("web up", lambda: _healthy(port), timeout=60)
                time.sleep(3)  # workers' pools and beat up
                measure = _measure_same_instant if same_instant else _measure
                result = measure(url, port, keys, backlog, redis_url, drain=drain, timeout=timeout)
            except Exception:
                log.seek(0)
                sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
                raise
            finally:
                stop_stack(procs)
    common.clean_redis(client)
    client.close()
    return result


def _measure(url, port, keys, backlog, redis_url, *, drain, timeout) -> dict[str, Any]:
    small = len(keys)
    t0 = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    insert_backlog(url, "tenant-a", backlog, due=t0)
    with Broker(redis_url) as broker:
        dispatched_at = _wait(
            "A's runs dispatched",
            lambda: (
                _count(url, "SELECT count(*) FROM runs WHERE tenant_id = 'tenant-a'") >= backlog
            ),
            timeout=timeout,
        )
        t1 = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
        for tenant in sorted(keys):
            _post_trigger(port, keys[tenant], t1)
        created_at = time.time()
        time.sleep(max(0.0, t1.timestamp() - time.time()))
        a_waiting = _count(
            url, "SELECT count(*) FROM runs WHERE tenant_id = 'tenant-a' AND status = 'pending'"
        )
        small_done = (
            "SELECT count(*) FROM runs WHERE tenant_id LIKE 'small-%%' AND started_at IS NOT NULL"  # noqa: E501
        )
        _wait("B's runs started", lambda: _count(url, small_done) >= small, timeout=timeout)
        a_waiting_after = _count(
            url, "SELECT count(*) FROM runs WHERE tenant_id = 'tenant-a' AND status = 'pending'"
        )
        drain_seconds = None
        if drain:
            a_done = (
                "SELECT count(*) FROM runs WHERE tenant_id = 'tenant-a' AND finished_at IS NOT NULL"  # noqa: E501
            )
            _wait("A drained", lambda: _count(url, a_done) >= backlog, timeout=timeout, poll=0.5)
            [(last_a,)] = _query(
                url, "SELECT max(finished_at) FROM runs WHERE tenant_id = 'tenant-a'"
            )
            drain_seconds = (last_a - t0).total_seconds()
        time.sleep(0.3)
        runs_published = _count(
            url, "SELECT count(*) FROM runs WHERE enqueued_at IS NOT NULL OR started_at IS NOT NULL"
        )
    lags = [
        float(lag)
        for (lag,) in _query(
            url,
            "SELECT EXTRACT(EPOCH FROM started_at - scheduled_for) FROM runs "
            "WHERE tenant_id LIKE 'small-%%'",
        )
    ]
    ideal = backlog * SLEEP / PER_TENANT
    depths = [d for _, d, _ in broker.samples]
    held = [d + u for _, d, u in broker.samples]
    return {
        "backlog": backlog,
        "small_tenants": small,
        "small_lag_p50": round(common.percentile(lags, 50), 3),
        "small_lag_p99": round(common.percentile(lags, 99), 3),
        "small_lag_max": round(max(lags), 3),
        "small_lags": sorted(round(lag, 3) for lag in lags),
        "a_waiting_at_small_fire": a_waiting,
        "a_waiting_after_small_started": a_waiting_after,
        "a_dispatch_seconds": round(dispatched_at - t0.timestamp(), 2),
        "small_create_seconds": round(created_at - dispatched_at, 2),
        "a_drain_seconds": round(drain_seconds, 2) if drain_seconds is not None else None,
        "a_drain_ideal_seconds": round(ideal, 2),
        "a_drain_over_ideal": round(drain_seconds / ideal, 3) if drain_seconds else None,
        "run_trigger_publishes": broker.publishes,
        "other_publishes_to_runs": broker.other_publishes,
        "runs_handed_to_broker": runs_published,
        "publishes_per_run": round(broker.publishes / max(1, runs_published), 3),
        "broker_depth_max": max(depths, default=0),
        "broker_held_max": max(held, default=0),
        "depth_series": [(round(t - t0.timestamp(), 2), d, u) for t, d, u in broker.samples[::1]],
        "t0": t0.isoformat(),
    }


def _measure_same_instant(url, port, keys, backlog, redis_url, *, drain, timeout) -> dict:
    """B's triggers due at the very instant of A's burst (see the module docstring)."""
    small = len(keys)
    # Room to insert A's rows and create B's triggers before T0 (about 20,000 rows a second).
    t0 = (datetime.now(UTC) + timedelta(seconds=4 + backlog / 15_000)).replace(microsecond=0)
    insert_backlog(url, "tenant-a", backlog, due=t0)
    for tenant in sorted(keys):
        _post_trigger(port, keys[tenant], t0)
    created_at = time.time()
    if created_at >= t0.timestamp():
        raise RuntimeError("the small tenants' triggers were created after T0: raise the lead")
    with Broker(redis_url) as broker:
        small_done = (
            "SELECT count(*) FROM runs WHERE tenant_id LIKE 'small-%%' AND started_at IS NOT NULL"  # noqa: E501
        )
        _wait("B's runs started", lambda: _count(url, small_done) >= small, timeout=timeout)
        dispatched_at = _wait(
            "A's runs dispatched",
            lambda: (
                _count(url, "SELECT count(*) FROM runs WHERE tenant_id = 'tenant-a'") >= backlog
            ),
            timeout=timeout,
        )
    lags = [
        float(lag)
        for (lag,) in _query(
            url,
            "SELECT EXTRACT(EPOCH FROM started_at - scheduled_for) FROM runs "
            "WHERE tenant_id LIKE 'small-%%'",
        )
    ]
    [(b_started,)] = _query(url, "SELECT max(started_at) FROM runs WHERE tenant_id LIKE 'small-%%'")
    return {
        "backlog": backlog,
        "same_instant": True,
        "small_tenants": small,
        "small_lag_p50": round(common.percentile(lags, 50), 3),
        "small_lag_p99": round(common.percentile(lags, 99), 3),
        "small_lag_max": round(max(lags), 3),
        "small_lags": sorted(round(lag, 3) for lag in lags),
        "a_dispatch_seconds": round(dispatched_at - t0.timestamp(), 2),
        "b_started_before_a_dispatched": b_started.timestamp() < dispatched_at,
        "small_create_lead_seconds": round(t0.timestamp() - created_at, 2),
        "run_trigger_publishes": broker.publishes,
        "t0": t0.isoformat(),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, nargs="+", default=[2000])
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--drain", action="store_true", help="also wait for A to drain")
    parser.add_argument(
        "--same-instant",
        action="store_true",
        help="B's triggers due at the instant of A's burst, not after it was dispatched",
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--redis-url", default=common.bench_redis_url())
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    rows = []
    for backlog in args.backlog:
        row = run_once(
            backlog,
            args.small,
            args.redis_url,
            drain=args.drain,
            timeout=args.timeout,
            same_instant=args.same_instant,
        )
        rows.append(row)
        print(
            json.dumps({k: v for k, v in row.items() if k not in ("depth_series", "small_lags")}),
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
