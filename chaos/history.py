"""The history, read after the load: runs from PostgreSQL, deliveries from the receiver's
log, and the workers' own log events about fenced finishes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

from chaos.checker import Delivery, RunRecord

RUNS = (
    "SELECT id::text, trigger_id::text, tenant_id, scheduled_for, status, kind, attempt, "
    "started_at, finished_at FROM runs"
)


def runs(url: str) -> list[RunRecord]:
    conn = psycopg2.connect(url, application_name="chaos-history")
    try:
        with conn.cursor() as cur:
            cur.execute(RUNS)
            return [
                RunRecord(
                    id=r[0],
                    trigger_id=r[1],
                    tenant=r[2],
                    scheduled_for=r[3],
                    status=r[4],
                    kind=r[5],
                    attempt=r[6],
                    started_at=r[7],
                    finished_at=r[8],
                )  # fmt: skip
                for r in cur.fetchall()
            ]
    finally:
        conn.close()


def deliveries(path: Path) -> list[Delivery]:
    found = []
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        found.append(Delivery(key=item["key"], body_sha256=item["sha256"], status=item["status"],
                              at=datetime.fromtimestamp(item["at"], UTC)))  # fmt: skip
    return found


def log_events(path: Path, events: set[str]) -> list[dict]:
    """The JSON log lines of a process whose `event` is one of `events`."""
    found = []
    if not path.exists():
        return found
    for line in path.read_text(errors="replace").splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            item = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("event") in events:
            found.append(item)
    return found
