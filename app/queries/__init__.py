"""Every SQL statement of the service, one module per table, one named function each.

One dialect: SQLAlchemy `text()` with named parameters (`:now`), or SQLAlchemy's query
builder where the service works on ORM rows it then changes. Batch writes send each column
as one array parameter (`unnest`, see `array_literal`) behind a named function. Other modules
call these functions and hold no SQL text (tests/unit/test_layering.py checks it).

The `runs` table has three modules by use: `runs` (one run's transitions), `run_queue`
(batch insert, admission, recovery) and `run_history` (API reads, manual runs, metrics,
retention).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.orm import Session

Executor = Session | Connection  # what a statement runs on: an ORM session or a connection


def array_literal(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of `values` (`{"a","2026-01-05T12:00:00+00:00",NULL}`), to
    bind as one text parameter and read with `unnest(CAST(:param AS <type>[]))`.

    A dispatch batch is then a few parameters, one per column. psycopg2's `execute_values`
    quoted every value of every row (datetimes slowly): a third of a 100,000-trigger tick.
    Every string is quoted, since a tenant's string may hold any character; datetimes go
    as ISO-8601 with their offset, booleans as t/f, None as NULL.
    """
    # A batch's instants repeat: each is written once. Keyed by type too: True == 1.
    quoted: dict[tuple[type, object], str] = {}
    parts = []
    for value in values:
        key = (type(value), value)
        part = quoted.get(key)
        if part is None:
            part = quoted[key] = _element(value)
        parts.append(part)
    return "{" + ",".join(parts) + "}"


def _element(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("a naive datetime has no instant")
        text = value.isoformat()
    else:
        text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
