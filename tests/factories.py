"""Rows written straight into `triggers` and `runs`, for the tests and the benchmarks.

In the product the API and the dispatcher make these rows. A test or a benchmark that needs a
room in a given state (a slot taken, a pile of due retries, 100,000 waiting runs) writes them
with these factories instead of its own `INSERT`. Every factory:

1. takes an open SQLAlchemy connection and writes in the caller's transaction;
2. writes all its rows in ONE statement, built server-side over
   `generate_series(1, count) AS n`, so that a benchmark's 100,000 runs cost one round trip;
3. fills what the schema requires with defaults and takes any other column by name;
4. returns the ids of the rows it made, in the order of `n`.

None commits: the caller's transaction does.

A column's value is one of:

- a Python value: the same for every row (a dict or a list is stored as `jsonb`);
- `sql("expression", **params)`: SQL evaluated for each row, in which `n` is the row's number
  from 1 (`sql("now() - interval '30 s'")`, `sql("'pile:' || n")`);
- `each([...])`: one value per row, in order; `count` is then their number.

Benchmarks open a connection on a database URL with `transaction(url)`.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, create_engine, pool, text

from app import dbadmin

ECHO = {"type": "task", "name": "echo"}
_names = itertools.count()


@dataclass(frozen=True)
class Sql:
    """An SQL expression evaluated per row (`n` is the row's number), with its parameters."""

    expression: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Each:
    """One value per row, in the order of `n`."""

    values: tuple[Any, ...]


def sql(expression: str, **params: Any) -> Sql:
    """A column computed by PostgreSQL for each row; `:name` placeholders bind `params`."""
    return Sql(expression, params)


def each(values: Iterable[Any]) -> Each:
    """A column given row by row."""
    return Each(tuple(values))


def every(start: datetime, step: timedelta) -> Sql:
    """Instants `start`, `start + step`, ... for rows 1, 2, ..."""
    name = f"every{next(_names)}"
    return sql(
        f"CAST(:{name}_start AS timestamptz) + (n - 1) * CAST(:{name}_step AS interval)",
        **{f"{name}_start": start, f"{name}_step": step},
    )


def make_trigger(conn: Connection, **columns: Any) -> uuid.UUID:
    """One trigger (see `make_triggers`); returns its id."""
    [trigger_id] = make_triggers(conn, 1, **columns)
    return trigger_id


def make_triggers(
    conn: Connection, count: int = 1, *, returning: bool = True, **columns: Any
) -> list[uuid.UUID]:
    """`count` triggers of tenant `tenant-a` named t1, t2, ..., running the echo task every
    minute unless the columns say otherwise (a `run_at` or an `interval_seconds` replaces the
    cron). Returns their ids (none when not `returning`)."""
    defaults: dict[str, Any] = {
        "tenant_id": "tenant-a",
        "name": sql("'t' || n"),
        "action": ECHO,
    }
    if columns.get("run_at") is None and columns.get("interval_seconds") is None:
        defaults["cron"] = "* * * * *"
    return _insert(conn, "triggers", count, {**defaults, **columns}, returning=returning)


def make_run(conn: Connection, **columns: Any) -> uuid.UUID:
    """One run (see `make_runs`); returns its id."""
    [run_id] = make_runs(conn, 1, **columns)
    return run_id


def make_runs(
    conn: Connection, count: int = 1, *, returning: bool = True, **columns: Any
) -> list[uuid.UUID]:
    """`count` runs, `pending` and `manual` (several may share an instant), of a made-up
    trigger of tenant `tenant-a`, scheduled for now (PostgreSQL's clock) and due then (the
    `due_at` the product writes with every run: its `scheduled_for` unless given), each with
    its own idempotency key, unless the columns say otherwise. Given a `trigger_id` alone, the runs
    are of that trigger's tenant. Returns their ids (none when not `returning`: a million
    rows need not come back)."""
    defaults: dict[str, Any] = {
        "trigger_id": sql("gen_random_uuid()"),
        "tenant_id": "tenant-a",
        "scheduled_for": sql("now()"),
        "kind": "manual",
        "idempotency_key": sql("gen_random_uuid()::text"),
    }
    defaults["due_at"] = columns.get("scheduled_for", defaults["scheduled_for"])
    if "trigger_id" in columns and "tenant_id" not in columns:
        defaults["tenant_id"] = sql(
            "(SELECT tenant_id FROM triggers WHERE id = :of_trigger)",
            of_trigger=columns["trigger_id"],
        )
    return _insert(conn, "runs", count, {**defaults, **columns}, returning=returning)


def make_runs_for_triggers(
    conn: Connection,
    *,
    scheduled_for: datetime,
    key_suffix: str,
    where: str = "TRUE",
    **params: Any,
) -> list[uuid.UUID]:
    """A pending run of each trigger matching `where` (SQL on `triggers t`, binding
    `params`), scheduled for `scheduled_for`, its idempotency key `<trigger id>:<key_suffix>`
    (the dispatcher's when the suffix is the instant in ISO form). One statement whatever
    the number of triggers; returns the runs' ids."""
    rows = conn.execute(
        text(
            "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, due_at, idempotency_key) "
            "SELECT gen_random_uuid(), t.id, t.tenant_id, :for_at, :for_at, "
            "t.id || ':' || :key_suffix "
            f"FROM triggers t WHERE {where} RETURNING id"
        ),
        {"for_at": scheduled_for, "key_suffix": key_suffix, **params},
    )
    return [row.id for row in rows]


def occupy_slot(conn: Connection, *, tenant_id: str = "other") -> uuid.UUID:
    """A run of `tenant_id` running now: with one slot in all (MAX_RUNNING=1), every run
    made next stays pending."""
    return make_run(
        conn, tenant_id=tenant_id, idempotency_key="busy", status="running", generation=0
    )


@contextmanager
def transaction(url: str) -> Iterator[Connection]:
    """A connection to the database at libpq `url`, in a transaction committed on exit."""
    engine = create_engine(dbadmin.sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _insert(
    conn: Connection, table: str, count: int, columns: dict[str, Any], *, returning: bool = True
) -> list[uuid.UUID]:
    """INSERT `count` rows of `columns` into `table` in one statement; return their ids in
    the order of `n` (none when not `returning`).

    The ids are drawn first, numbered, in a CTE the INSERT reads: RETURNING alone does not
    promise the order of the rows."""
    lengths = {len(v.values) for v in columns.values() if isinstance(v, Each)}
    if len(lengths) > 1:
        raise ValueError(f"each() columns of different lengths: {sorted(lengths)}")
    if lengths:
        count = lengths.pop()
    types = _column_types(conn, table)
    params: dict[str, Any] = {"count": count}
    expressions = {}
    for index, (name, value) in enumerate({"id": sql("gen_random_uuid()"), **columns}.items()):
        if name not in types:
            raise ValueError(f"{table} has no column {name!r}")
        placeholder = f"c{index}"
        if isinstance(value, Sql):
            expressions[name] = f"({value.expression})"
            params.update(value.params)
        elif isinstance(value, Each):
            expressions[name] = f"(CAST(:{placeholder} AS {types[name]}[]))[n]"
            params[placeholder] = [_plain(v, types[name]) for v in value.values]
        else:
            expressions[name] = f"CAST(:{placeholder} AS {types[name]})"
            params[placeholder] = _plain(value, types[name])
    rows = "generate_series(1, :count) AS n"
    if not returning:
        conn.execute(
            text(f"INSERT INTO {table} ({', '.join(expressions)}) "
                 f"SELECT {', '.join(expressions.values())} FROM {rows}"),
            params,
        )  # fmt: skip
        return []
    new_id = expressions.pop("id")
    statement = (
        f"WITH new AS MATERIALIZED (SELECT n, {new_id} AS new_id FROM {rows}), "
        f"made AS (INSERT INTO {table} (id, {', '.join(expressions)}) "
        f"SELECT new_id, {', '.join(expressions.values())} FROM new) "
        "SELECT new_id FROM new ORDER BY n"
    )
    return list(conn.execute(text(statement), params).scalars())


def _plain(value: Any, column_type: str) -> Any:
    """A value psycopg2 sends as it is: jsonb as its text, uuids as strings."""
    if column_type == "jsonb" and value is not None:
        return json.dumps(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


_TYPES: dict[tuple[str, str], dict[str, str]] = {}


def _column_types(conn: Connection, table: str) -> dict[str, str]:
    """`table`'s columns and their SQL types, read from the catalog (once per database)."""
    key = (str(conn.engine.url), table)
    if key not in _TYPES:
        rows = conn.execute(
            text(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped"
            ),
            {"table": table},
        )
        _TYPES[key] = {name: kind for name, kind in rows}
    return _TYPES[key]
