"""REST API latency under gunicorn: `python -m bench.api_latency [--requests 2000]`.

1. A fresh database with 10,000 stored triggers (one tenant by default: the worst case for
   lists) and an API key for that tenant.
2. gunicorn serving `web:create_app()` (gthread workers, keep-alive) on a free port.
3. Sequential requests from one client over one keep-alive connection (or --clients N
   threads): create (POST /triggers), get (GET /triggers/{id} of random stored ids) and
   list (GET /triggers?limit=100, walking the keyset cursor through all pages and around).
4. Prints p50/p99/max per operation in milliseconds against the issue's targets
   (p99 < 50 ms for get and create, < 100 ms for list); `--json PATH` also writes them, with
   p90 and p95, for bench.run_all.

Needs a PostgreSQL server (DATABASE_URL or local) and Redis (REDIS_URL or local); run it
with `python scripts/devstack.py -- python -m bench.api_latency` to get embedded ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg2
import requests
from sqlalchemy import text

from app import db, dbadmin, keys
from bench import common

TARGETS_MS = {"create": 50.0, "get": 50.0, "list": 100.0}
BODY = {"name": "bench", "cron": "*/5 * * * *", "action": {"type": "task", "name": "echo"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], port: int, workers: int, log) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--worker-class", "gthread", "--threads", "4",
        "--keep-alive", "30", "web:create_app()",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return proc
        except requests.RequestException:  # not listening, or workers still booting
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gunicorn did not start")


def measure(count: int, clients: int, call: Callable[[requests.Session, int], None]) -> list[float]:
    """Latencies in ms of `count` calls spread over `clients` threads (one session each)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        session = requests.Session()
        mine = []
        for n in range(offset, count, clients):
            started = time.perf_counter()
            call(session, n)
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def stored_ids(url: str) -> list[str]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id::text FROM triggers WHERE tenant_id = 'tenant-0'")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    with common.fresh_database("sched_bench_api") as url:
        common.insert_triggers(
            url,
            args.triggers,
            next_run_at=datetime.now(UTC) + timedelta(days=1),
            cron="*/5 * * * *",
            tenants=args.tenants,
        )
        engine = db.get_engine(dbadmin.sqlalchemy_url(url))
        with db.session_scope(engine) as session:
            key = keys.create(
                session, tenant_id="tenant-0", principal="bench", role="admin",
                now=datetime.now(UTC),
            ).key  # fmt: skip
        with engine.connect() as conn:  # as autovacuum would after a bulk load
            conn.execute(text("ANALYZE"))
            conn.commit()
        db.dispose_engines()
        ids = stored_ids(url)
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
            "LOG_LEVEL": "INFO",
            # The tenancy limits (issue 11) would stop a latency benchmark: lift them.
            "MAX_TRIGGERS_PER_TENANT": str(args.triggers + args.requests * args.clients + 1000),
            "API_RATE_LIMIT": "1000000/minute",
        }
        base = f"http://127.0.0.1:{port}/api/v1"
        headers = {"Authorization": f"Bearer {key}"}
        cursor: dict[int, str | None] = {}

        def create(session: requests.Session, n: int) -> None:
            response = session.post(f"{base}/triggers", json=BODY, headers=headers, timeout=10)
            assert response.status_code == 201, response.text

        def get(session: requests.Session, n: int) -> None:
            trigger_id = random.choice(ids)
            response = session.get(f"{base}/triggers/{trigger_id}", headers=headers, timeout=10)
            assert response.status_code == 200, response.text

        def list_page(session: requests.Session, n: int) -> None:
            lane = threading.get_ident()
            query = {"limit": 100, **({"cursor": cursor[lane]} if cursor.get(lane) else {})}
            response = session.get(f"{base}/triggers", params=query, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            cursor[lane] = response.json()["next_cursor"]  # None wraps to the first page

        with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
            server = start_gunicorn(env, port, args.workers, log)
            try:
                measure(200, args.clients, get)  # warm up connections and caches
                results = {
                    "create": measure(args.requests, args.clients, create),
                    "get": measure(args.requests, args.clients, get),
                    "list": measure(args.requests, args.clients, list_page),
                }
            finally:
                server.terminate()
                server.wait(timeout=30)
    report(results, args)
    return results


def figures(results: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Percentiles in milliseconds per operation."""
    return {
        name: {
            **{f"p{q}": percentile(values, q) for q in (50, 90, 95, 99)},
            "max": max(values),
            "mean": statistics.fmean(values),
            "requests": len(values),
        }
        for name, values in results.items()
    }


def report(results: dict[str, list[float]], args: argparse.Namespace) -> None:
    facts = common.machine()
    print(
        f"API latency: {args.triggers} triggers stored ({args.tenants} tenant(s)), "
        f"gunicorn {args.workers} gthread workers, {args.clients} client(s), "
        f"{args.requests} requests per operation; {facts['cores']} cores, "
        f"Python {facts['python']}"
    )
    print(f"{'operation':<10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'mean ms':>10}  target")
    for name, values in results.items():
        p99 = percentile(values, 99)
        verdict = "ok" if p99 < TARGETS_MS[name] else "MISSED"
        print(
            f"{name:<10}{percentile(values, 50):>10.2f}{p99:>10.2f}{max(values):>10.2f}"
            f"{statistics.fmean(values):>10.2f}  p99 < {TARGETS_MS[name]:.0f} ms: {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the percentiles to this file")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures(results), fh)


if __name__ == "__main__":
    main()
