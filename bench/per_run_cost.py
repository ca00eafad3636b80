"""What PostgreSQL pays per run: `python -m bench.per_run_cost [--runs 10000] [--server URL]`.

Issue 27. N one-time `echo` triggers due at once, on a fresh database: the real dispatcher
tick inserts their runs and admits the first ones; the real worker (`celery -A tasks
worker`, prefork, concurrency 8, MAX_RUNNING = MAX_RUNNING_PER_TENANT = 8) drains them,
each finish admitting and keeping the next run as it does in production. From PostgreSQL's
own counters, between the tick and the last finish, divided by N:

- WAL bytes (pg_current_wal_lsn delta) and full-page images (pg_stat_wal);
- index entries written: B-tree insert records in that WAL (pg_walinspect), and heap
  updates, HOT or not;
- rows inserted, updated (HOT share) and deleted (pg_stat_user_tables), per table;
- statements (top-level calls) and their execution time (pg_stat_statements);
- CPU time of every PostgreSQL process (the postmaster's children, exited ones included).

By default the measurement runs on a private PostgreSQL cluster started for it (initdb, as
the `postgres` user when run as root), so that nothing else writes WAL meanwhile and
pg_stat_statements is loaded; `--server URL` measures on an existing server instead (its
WAL delta then counts whatever else writes there, and statements need pg_stat_statements
in shared_preload_libraries). The broker is a private redis-server too, when installed
(`--redis-url` for another). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2

from bench import common, e2e_lag
from tests import support

CONCURRENCY = 8
PORT = 5497
CELERY = os.path.join(os.path.dirname(sys.executable), "celery")
CLUSTER_SETTINGS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "track_functions": "'pl'",
    "pg_stat_statements.track_utility": "off",
    "pg_stat_statements.track_planning": "on",
    # No checkpoint starts by itself during a drain: one is taken just before it, so every
    # side pays the same full-page images (the first change of each page after it).
    "checkpoint_timeout": "'1h'",
    "max_wal_size": "'8GB'",
    "shared_buffers": "'256MB'",
    "max_connections": "100",
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
}


def _bindir() -> str | None:
    found = shutil.which("pg_config")
    if found:
        done = subprocess.run([found, "--bindir"], capture_output=True, text=True)
        if done.returncode == 0 and os.path.exists(os.path.join(done.stdout.strip(), "initdb")):
            return done.stdout.strip()
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(candidates[-1]) if candidates else None


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def private_cluster(port: int = PORT) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on `port`, trust auth; yields its server URL."""
    bindir = _bindir()
    if bindir is None:
        raise SystemExit("no initdb found: pass --server URL")
    data = tempfile.mkdtemp(prefix="bench-pgcost-")
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    pg_ctl = os.path.join(bindir, "pg_ctl")
    subprocess.run(
        _as_postgres([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres",
                      "-A", "trust", "--no-sync"]),
        check=True, capture_output=True,
    )  # fmt: skip
    with open(os.path.join(data, "postgresql.conf"), "a") as conf:
        for name, value in CLUSTER_SETTINGS.items():
            conf.write(f"{name} = {value}\n")
        conf.write(f"port = {port}\n")
    log = os.path.join(data, "server.log")
    subprocess.run(
        _as_postgres([pg_ctl, "-D", data, "-l", log, "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", data, "-m", "fast", "-w", "stop"]), capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def private_redis(port: int) -> Iterator[str]:
    """A throwaway redis-server on `port`, when one is installed (else BENCH_REDIS_DB of the
    shared one): another process reading the `runs` queue of a shared logical database
    (a test run) takes this drain's messages, and its runs never start."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield common.bench_redis_url()
        return
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = __import__("redis").Redis.from_url(url)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except Exception:
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def _postgres_cpu_seconds(conn) -> float | None:
    """CPU seconds of the postmaster and all its children, exited ones included (cutime)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_postmaster_start_time(), current_setting('data_directory')")
        data = cur.fetchone()[1]
    try:
        with open(os.path.join(data, "postmaster.pid")) as fh:
            postmaster = int(fh.readline())
    except OSError:
        return None  # another host's server, or not readable
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int) -> list[str] | None:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None

    own = stat(postmaster)
    if own is None:
        return None
    # Fields after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15).
    total = sum(int(v) for v in own[11:15])
    for path in glob.glob("/proc/[0-9]*/stat"):
        fields = stat(int(path.split("/")[2]))
        if fields and int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / tick


# This module's own statements (the poll, the reads of the counters) start with OWN and are
# left out of the statement figures.
OWN = "/* bench.per_run_cost */ "
_TABLES = f"""{OWN}
    SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
    FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname
"""
_PRODUCT = f"""
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database
                                          WHERE datname = current_database())
      AND query NOT LIKE '{OWN.strip()}%'
"""
_STATEMENTS = f"""{OWN}
    SELECT sum(calls), sum(total_exec_time), sum(total_plan_time),
           sum(shared_blks_hit + shared_blks_read), sum(shared_blks_dirtied) {_PRODUCT}"""
_TOP = f"""{OWN}
    SELECT calls, round(total_exec_time::numeric, 1),
           left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
    {_PRODUCT}
    ORDER BY total_exec_time DESC LIMIT 15
"""
_POLL = f"{OWN}SELECT count(*) FROM runs WHERE scheduled_for = %s AND finished_at IS NOT NULL"
_FUNCTIONS = f"{OWN}SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions"
_WAL_RECORDS = f"""{OWN}
    SELECT "resource_manager/record_type", count, record_size, fpi_size
    FROM pg_get_wal_stats(%s, %s, true) WHERE count > 0
"""


# Backends report their table and function counters when idle, at most once a second and at
# the latest after 10 s of idleness (PostgreSQL 15): the figures are read after that long.
STATS_SETTLE_SECONDS = 11.0


def _reset(conn, statements: bool) -> tuple[str, float | None]:
    time.sleep(STATS_SETTLE_SECONDS)  # the warm-up's counters land before the reset
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_reset(), pg_stat_reset_shared('wal')")
        if statements:
            cur.execute("SELECT pg_stat_statements_reset()")
        cur.execute("CHECKPOINT")
        cur.execute("SELECT pg_current_wal_lsn()")
        lsn = cur.fetchone()[0]
    return lsn, _postgres_cpu_seconds(conn)


def _read(conn, start_lsn: str, cpu0: float | None, n: int, statements: bool) -> dict[str, Any]:
    cpu1 = _postgres_cpu_seconds(conn)
    time.sleep(STATS_SETTLE_SECONDS)
    out: dict[str, Any] = {"runs": n}
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn(), pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                    (start_lsn,))  # fmt: skip
        end_lsn, wal = cur.fetchone()
        cur.execute("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")
        records, fpi, _ = cur.fetchone()
        out.update(wal_bytes_per_run=float(wal) / n, wal_records_per_run=records / n,
                   fpi_per_run=fpi / n)  # fmt: skip
        cur.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_walinspect'")
        if cur.fetchone()[0]:
            cur.execute(_WAL_RECORDS, (start_lsn, end_lsn))
            kinds = {kind: (int(count), int(size), int(fpi_size)) for kind, count, size, fpi_size
                     in cur.fetchall()}  # fmt: skip
            btree = sum(c for k, (c, _, _) in kinds.items() if k.startswith("Btree/INSERT"))
            out["index_entries_per_run"] = btree / n
            biggest = sorted(kinds.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))
            out["wal_by_record"] = {
                kind: {"per_run": round(c / n, 2), "bytes_per_run": round((s + f) / n, 1)}
                for kind, (c, s, f) in biggest
            }
        cur.execute(_TABLES)
        tables = {}
        upd = hot = 0
        for name, ins, updated, hot_updated, deleted in cur.fetchall():
            tables[name] = {"ins": ins / n, "upd": updated / n, "hot": hot_updated / n,
                            "del": deleted / n}  # fmt: skip
            upd, hot = upd + updated, hot + hot_updated
        out["tables_per_run"] = tables
        out["hot_share"] = hot / upd if upd else None
        cur.execute(_FUNCTIONS)
        out["functions_ms_per_run"] = {name: {"calls": calls / n, "total": float(total) / n,
                                              "self": float(own) / n}
                                       for name, calls, total, own in cur.fetchall()}  # fmt: skip
        if statements:
            cur.execute(_STATEMENTS)
            calls, exec_ms, plan_ms, buffers, dirtied = cur.fetchone()
            # Buffer accesses: the work of the statements in pages, which other load on the
            # machine does not change (their time it does).
            out["buffers_per_run"] = float(buffers) / n
            out["buffers_dirtied_per_run"] = float(dirtied) / n
            out["statements_per_run"] = float(calls) / n
            out["pg_exec_ms_per_run"] = float(exec_ms) / n
            out["pg_plan_ms_per_run"] = float(plan_ms or 0) / n
            cur.execute(_TOP)
            out["top_statements"] = [[int(c), float(t), q] for c, t, q in cur.fetchall()]
    if cpu0 is not None and cpu1 is not None:
        out["pg_cpu_ms_per_run"] = 1000 * (cpu1 - cpu0) / n
    return out


def _wait_finished(conn, due: datetime, count: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with conn.cursor() as cur:
            cur.execute(_POLL, (due,))
            if cur.fetchone()[0] >= count:
                return
        if time.monotonic() > deadline:
            with conn.cursor() as cur:
                cur.execute(f"{OWN}SELECT status, count(*) FROM runs GROUP BY 1")
                statuses = dict(cur.fetchall())
            raise SystemExit(f"{count} runs not finished in {timeout} s: {statuses}")
        time.sleep(0.25)


def drain(server: str, runs: int, redis_url: str, *, timeout: float) -> dict[str, Any]:
    """The measured drain on `server` (a URL to its `postgres` database): figures per run."""
    from app import config, db
    from tasks import celery
    from tasks import dispatch as dispatch_task
    from tasks.celery_app import use_broker

    url = common.dbadmin.create_database("sched_bench_cost", url=server)
    try:
        common.dbadmin.migrate(url)
        admin = psycopg2.connect(url)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_available_extensions WHERE name = %s",
                        ("pg_walinspect",))  # fmt: skip
            if cur.fetchone()[0]:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            cur.execute("SELECT current_setting('shared_preload_libraries') ~ 'pg_stat_statements'")
            statements = cur.fetchone()[0]
            if statements:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "BROKER_URL": redis_url,
               "LOG_LEVEL": "WARNING", "MAX_RUNNING": str(CONCURRENCY),
               "MAX_RUNNING_PER_TENANT": str(CONCURRENCY),
               "DISPATCH_TIME_BUDGET_SECONDS": "600"}  # fmt: skip
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")})
        for name in ("MAX_RUNNING", "MAX_RUNNING_PER_TENANT", "DISPATCH_TIME_BUDGET_SECONDS"):
            os.environ[name] = env[name]
        config.set_settings(None)
        db.dispose_engines()
        use_broker(celery, redis_url)
        worker = subprocess.Popen(
            [CELERY, "-A", "tasks", "worker", "-Q", "runs", "-P", "prefork", "-c",
             str(CONCURRENCY), "-n", "cost@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "WARNING"],
            cwd=common.dbadmin.ROOT, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            # Warm-up: every pool process runs a run (imports, connections, plans).
            warm = datetime.now(UTC) - timedelta(minutes=2)
            e2e_lag.insert_due(url, 4 * CONCURRENCY, due=warm, with_runs=False)
            dispatch_task.tick()
            e2e_lag.wait_finished(url, warm, 4 * CONCURRENCY, timeout=120)
            due = datetime.now(UTC) - timedelta(minutes=1)
            e2e_lag.insert_due(url, runs, due=due, with_runs=False)
            with admin.cursor() as cur:
                cur.execute("ANALYZE")
            start_lsn, cpu0 = _reset(admin, statements)
            started = time.monotonic()
            stats = dispatch_task.tick()
            _wait_finished(admin, due, runs, timeout=timeout)
            seconds = time.monotonic() - started
            figures = _read(admin, start_lsn, cpu0, runs, statements)
            with admin.cursor() as cur:
                cur.execute("SELECT status, count(*) FROM runs WHERE scheduled_for = %s "
                            "GROUP BY 1", (due,))  # fmt: skip
                figures["statuses"] = dict(cur.fetchall())
            figures.update(seconds=round(seconds, 2), dispatched=stats.get("runs_created"))
        finally:
            support.stop_group(worker, timeout=30)  # the pool's processes too
            admin.close()
            db.dispose_engines()
    finally:
        common.dbadmin.drop_database(url)
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--server", help="measure on this server (default: a private cluster)")
    parser.add_argument("--port", type=int, default=PORT, help="the private cluster's port")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--redis-url", help="the broker (default: a private redis-server, else BENCH_REDIS_DB)"
    )
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        redis_url = args.redis_url or stack.enter_context(private_redis(args.port + 1))
        client = stack.enter_context(closing(__import__("redis").Redis.from_url(redis_url)))
        common.clean_redis(client)
        server = args.server or stack.enter_context(private_cluster(args.port))
        figures = drain(server, args.runs, redis_url, timeout=args.timeout)
        common.clean_redis(client)
    figures["private_cluster"] = not args.server
    print(json.dumps(figures, default=str), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, default=str)
    return figures


if __name__ == "__main__":
    main()
