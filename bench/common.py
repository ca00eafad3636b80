"""Shared pieces of the benchmarks: fresh databases, bulk trigger creation, machine facts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata

import psycopg2
from psycopg2.extras import execute_values

from app import dbadmin

INSERT_TRIGGERS = """
    INSERT INTO triggers (id, tenant_id, name, cron, timezone, run_at, action, next_run_at)
    VALUES %s
"""


@contextmanager
def fresh_database(prefix: str = "sched_bench") -> Iterator[str]:
    """A migrated, empty database, dropped afterwards; yields its libpq URL."""
    url = dbadmin.create_database(prefix)
    try:
        dbadmin.migrate(url)
        yield url
    finally:
        dbadmin.drop_database(url)


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
    """Insert `count` enabled triggers, all due at `next_run_at`, in pages of 5,000."""
    action = json.dumps({"type": "task", "name": "echo"})
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            for start in range(0, count, 5000):
                rows = [
                    (
                        str(uuid.uuid4()),
                        f"tenant-{n % tenants}",
                        f"bench-{n}",
                        expressions[n % len(expressions)] if expressions else cron,
                        "UTC",
                        run_at,
                        action,
                        next_run_at,
                    )
                    for n in range(start, min(count, start + 5000))
                ]
                execute_values(cur, INSERT_TRIGGERS, rows, page_size=5000)
        conn.commit()
    finally:
        conn.close()


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def machine() -> dict[str, object]:
    """Cores, memory and versions, recorded beside every figure."""
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    versions = {}
    for dist in ("celery", "kombu", "redis", "SQLAlchemy", "psycopg2-binary", "cron-descriptor"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }
