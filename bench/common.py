"""Shared pieces of the benchmarks: fresh databases, bulk trigger creation, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg2

from app import dbadmin
from tests import factories

# Benchmarks keep to their own Redis logical database, away from the test runs' ones.
BENCH_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "15"))

# Called with a benchmark database's URL just before it is dropped (see `before_drop`).
_before_drop: list[Callable[[str], None]] = []


def before_drop(callback: Callable[[str], None]) -> None:
    """Have `callback(url)` read a benchmark database before `fresh_database` drops it.

    A runner uses it to keep raw figures (every run's lag, say) that a benchmark module
    reduces to percentiles before its database goes away.
    """
    _before_drop.append(callback)


@contextmanager
def fresh_database(prefix: str = "sched_bench", revision: str = "head") -> Iterator[str]:
    """A database migrated to `revision`, empty, dropped afterwards; yields its libpq URL."""
    url = dbadmin.create_database(prefix)
    try:
        dbadmin.migrate(url, revision)
        yield url
        for callback in _before_drop:
            callback(url)
    finally:
        dbadmin.drop_database(url)


# The keys a benchmark run leaves in its logical database: the run queue and kombu's
# unacknowledged-message bookkeeping, the peers' keys, the pre-admission limiter's slot sets.
BENCH_KEY_PATTERNS = ("runs", "unacked*", "bench-*", "{sched-slots}*", "scheduler")


def clean_redis(client) -> None:
    """Delete what the benchmarks leave behind, and only that (not FLUSHDB: the logical
    database may be shared by mistake with something else running on this machine)."""
    for pattern in BENCH_KEY_PATTERNS:
        for key in client.scan_iter(pattern, count=10_000):
            client.delete(key)


def bench_redis_url(url: str | None = None) -> str:
    """REDIS_URL (or `url`) moved to the benchmarks' logical database, BENCH_REDIS_DB (15)."""
    url = url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+socket"):  # the database is a query parameter there
        query = dict(parse_qsl(parts.query))
        query["db"] = str(BENCH_REDIS_DB)
        return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{BENCH_REDIS_DB}"))


def insert_triggers(
    url: str,
    count: int,
    *,
    next_run_at: datetime,
    cron: str | None,
    run_at: datetime | None = None,
    tenants: int = 10,
    expressions: tuple[str, ...] | None = None,
) -> None:
    """Insert `count` enabled triggers of `tenants` tenants, all due at `next_run_at`, in one
    statement (tests/factories.py), and ANALYZE the table."""
    cron_of_n = factories.sql(
        "(CAST(:expressions AS text[]))[(n - 1) % :kinds + 1]",
        expressions=list(expressions or (cron,)),
        kinds=len(expressions or (cron,)),
    )
    with factories.transaction(url) as conn:
        factories.make_triggers(
            conn, count, returning=False,
            tenant_id=factories.sql("'tenant-' || (n - 1) % :tenants", tenants=tenants),
            name=factories.sql("'bench-' || (n - 1)"),
            cron=cron_of_n, timezone="UTC", run_at=run_at, next_run_at=next_run_at,
        )  # fmt: skip
    # What autovacuum does within a minute of such a load in any deployment; a tick a
    # second after it would otherwise be planned against an empty table's statistics.
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE triggers")
    finally:
        conn.close()


def peak_rss_mb(pid: int) -> float | None:
    """The process's own peak RSS (VmHWM of its address space), or None once it has exited.

    Not `ru_maxrss` from wait4: Linux carries the parent's RSS high-water mark into a child's
    maxrss at fork and exec, so a small dispatcher started by a 70 MB benchmark process reads
    as 70 MB.
    """
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def wait_measured(proc: subprocess.Popen, *, poll: float = 0.01) -> tuple[float, float]:
    """Wait for `proc`; return its (peak RSS in MB, CPU seconds) and set its returncode.

    The peak is its VmHWM read every `poll` seconds until it exits (see `peak_rss_mb`); the
    CPU time comes from wait4, which is exact.
    """
    peak = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return peak, usage.ru_utime + usage.ru_stime
        peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
        time.sleep(poll)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine() -> dict[str, object]:
    """Cores, memory and versions, recorded beside every figure."""
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    versions = {}
    dists = ("celery", "celery-redbeat", "kombu", "redis", "SQLAlchemy", "psycopg2-binary")
    for dist in (*dists, "cron-descriptor", "gunicorn", "Flask"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    model = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }
