"""Every SQL statement of the service, one module per table, one named function each.

One dialect: SQLAlchemy `text()` with named parameters (`:now`), or SQLAlchemy's query
builder where the service works on ORM rows it then changes. Batch writes use psycopg2's
`execute_values` (one round trip per page of rows) behind a named function. Other modules
call these functions and hold no SQL text (tests/unit/test_layering.py checks it).

The `runs` table has three modules by use: `runs` (one run's transitions), `run_queue`
(batch insert, admission, recovery) and `run_history` (API reads, manual runs, metrics,
retention).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

Executor = Session | Connection  # what a statement runs on: an ORM session or a connection


@contextmanager
def raw_cursor(conn: Connection) -> Iterator[Any]:
    """A psycopg2 cursor in the connection's transaction (for `execute_values`), closed after."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()
