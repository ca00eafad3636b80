"""The planner's statistics of `runs`, as the dispatcher keeps them fresh (app/batches.py,
`refresh_statistics`; docs/design.md section 5)."""

from __future__ import annotations

from sqlalchemy import Connection, text

# What the planner believes waits: its estimate of pending runs, from the table's statistics.
_PENDING_ESTIMATE = text("EXPLAIN (FORMAT JSON) SELECT 1 FROM runs WHERE status = 'pending'")
# SKIP_LOCKED: while another process holds a conflicting lock on the table (autovacuum's
# VACUUM or ANALYZE, another dispatcher's ANALYZE), PostgreSQL skips it with a warning
# instead of waiting; the next tick looks again.
_ANALYZE = text("ANALYZE (SKIP_LOCKED) runs")
_PENDING_COUNT = text("SELECT count(*) FROM runs WHERE status = 'pending'")


def pending_estimate(conn: Connection) -> int:
    """How many pending runs the planner's statistics say there are (a plan estimate)."""
    [[plan]] = conn.execute(_PENDING_ESTIMATE).one()
    return int(plan["Plan"]["Plan Rows"])


# Rows inserted, updated or deleted since the last ANALYZE (the statistics system's count,
# flushed by each backend within a second) against the rows the statistics describe.
_CHANGED_SINCE_ANALYZE = text("""
    SELECT s.n_mod_since_analyze, c.reltuples
    FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.relid = CAST('runs' AS regclass)
""")


def changed_since_analyze(conn: Connection) -> tuple[int, float]:
    """(Rows of `runs` changed since its statistics were taken, rows they describe: -1 when
    the table was never analyzed)."""
    changed, rows = conn.execute(_CHANGED_SINCE_ANALYZE).one()
    return int(changed or 0), float(rows)


def pending_count(conn: Connection) -> int:
    """How many runs are pending (an index-only count of ix_runs_pending_trigger)."""
    return int(conn.execute(_PENDING_COUNT).scalar_one())


def analyze(conn: Connection) -> None:
    """Refresh the planner's statistics of `runs`."""
    conn.execute(_ANALYZE)
