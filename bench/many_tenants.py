"""Admission with many tenants waiting: `python -m bench.many_tenants [--json PATH]`.

Two figures, each for the admission round of migration 0010 (candidate tenants found by a
walk of the waiting room in fire order) against the one before it (migration 0009: every
waiting tenant listed, one index probe each, then sorted):

- *rounds*: one `scheduler_admission_round` call, p50 and p90 over ROUNDS calls, with
  WAITING_RUNS runs waiting spread over 10 to 10,000 tenants, six of them with a run in
  progress, eight slots free, each admitted run then finished. Both definitions of the
  function run on the same rows in the same database, in turn, REPEAT times. *Wide*: one
  round that fills WIDE_SLOTS slots with 10,000 tenants waiting, rolled back, WIDE_REPEAT
  times each.
- *end to end*: `bench.e2e_lag` (one worker, prefork, concurrency 8, MAX_RUNNING = 8) with
  E2E_RUNS one-time triggers due at once, one per tenant, and the same runs over 10 tenants
  for comparison. Lag and runs per second. (It also ran on a database migrated to 0009 with
  the same code, until the runner came to call the functions that migrations 0017 and 0018
  add: 0009 against 0010 is compared by the rounds above.)
- *retry pile* (migration 0012, docs/design.md section 17): one round with one tenant's 0,
  200,000 and 1,000,000 retries whose backoff has passed and ten other tenants with a fire
  waiting, for head's round and 0010's; p50 and p90 over PILE_ROUNDS calls.

Each version of the function runs with the indexes it was written for (0012 replaced
ix_runs_pending_tenant by ix_runs_pending_first and ix_runs_retry_tenant).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2

from bench import common, e2e_lag
from tests import factories

TENANTS = (10, 100, 1000, 10_000)
WAITING_RUNS = 20_000
IN_PROGRESS_TENANTS = 6
FREE_SLOTS = 8
ROUNDS = 60
REPEAT = 3
E2E_RUNS = 5000
WIDE_SLOTS = 2000
WIDE_REPEAT = 5
LOCK_KEY = 1  # not the product's key: no other admitter shares these databases anyway
PILES = (0, 200_000, 1_000_000)
PILE_ROUNDS = 20
HEAD = "retry bound (0012)"
FUNCTION = "scheduler_admission_round(bigint, bigint, bigint, bigint, bigint)"
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "admission_round"  # older definitions, frozen
# The index 0012 replaced, which the rounds before it were planned around.
PENDING_TENANT = (
    "CREATE INDEX IF NOT EXISTS ix_runs_pending_tenant ON runs (tenant_id, scheduled_for, id) "
    "WHERE status = 'pending'"
)


def _definitions() -> dict[str, list[str]]:
    """The statements that define each version of the round function, with its indexes."""
    alter = f"ALTER FUNCTION {FUNCTION} SET enable_bitmapscan = off"  # migration 0009's
    return {
        # Head's round (the current text, _v2 since migration 0018) under the name the
        # frozen older ones have, so that each is timed by the same call.
        HEAD: [(ROOT / "app" / "queries" / "sql" / "admission_round_v2.sql").read_text()
               .replace("scheduler_admission_round_v2(", "scheduler_admission_round("),
               "DROP INDEX IF EXISTS ix_runs_pending_tenant"],
        "walk (0010)": [PENDING_TENANT, (FIXTURES / "0010.sql").read_text(), alter],
        "every tenant (0009)": [PENDING_TENANT, (FIXTURES / "0008.sql").read_text(), alter],
    }  # fmt: skip


def _load(url: str, tenants: int) -> None:
    """WAITING_RUNS pending runs over `tenants` tenants (one trigger per run), due now."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    due = datetime.now(UTC) - timedelta(seconds=5)
    try:
        with conn.cursor() as cur:
            cur.execute("TRUNCATE runs, triggers CASCADE")
        common.insert_triggers(url, WAITING_RUNS, next_run_at=None, cron=None, run_at=due,
                               tenants=tenants)  # fmt: skip
        with factories.transaction(url) as runs:
            factories.make_runs_for_triggers(runs, scheduled_for=due, key_suffix="x")
        with conn.cursor() as cur:
            # Tenants with a run in progress: their oldest fire becomes running.
            cur.execute(
                "UPDATE runs SET status = 'running', attempt = 1, started_at = now(), "
                "heartbeat_at = now() WHERE id IN (SELECT DISTINCT ON (tenant_id) id FROM runs "
                "ORDER BY tenant_id, scheduled_for, id LIMIT %s)",
                (IN_PROGRESS_TENANTS,),
            )
            cur.execute("ANALYZE runs")
    finally:
        conn.close()


def _define(url: str, statements: list[str]) -> None:
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)


def _rounds(url: str, statements: list[str], count: int = ROUNDS) -> list[float]:
    """`count` calls of the round function as `statements` define it, on a new connection
    (its plans made afresh); each admitted run is finished before the next call."""
    _define(url, statements)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    seconds = []
    try:
        with conn.cursor() as cur:
            for _ in range(count):
                started = time.perf_counter()
                cur.execute(
                    "SELECT run_id FROM scheduler_admission_round(%s, %s, 2, NULL, %s)",
                    (IN_PROGRESS_TENANTS + FREE_SLOTS, FREE_SLOTS, LOCK_KEY),
                )
                admitted = [row[0] for row in cur.fetchall() if row[0] is not None]
                seconds.append(time.perf_counter() - started)
                cur.execute(
                    "UPDATE runs SET status = 'succeeded', finished_at = now() "
                    "WHERE id = ANY(%s::uuid[])",
                    (admitted,),
                )
    finally:
        conn.close()
    return seconds


def rounds(say=print) -> list[dict[str, Any]]:
    """Round time against the number of waiting tenants, for each definition."""
    definitions = _definitions()
    rows = []
    with common.fresh_database("sched_bench_tenants") as url:
        for tenants in TENANTS:
            _load(url, tenants)
            samples: dict[str, list[float]] = {name: [] for name in definitions}
            for _ in range(REPEAT):
                for name, statements in definitions.items():
                    samples[name] += _rounds(url, statements)
            for name, values in samples.items():
                ms = sorted(1000 * v for v in values)
                row = {
                    "function": name,
                    "tenants": tenants,
                    "waiting_runs": WAITING_RUNS,
                    "p50_ms": round(statistics.median(ms), 3),
                    "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3),
                    "rounds": len(ms),
                }
                rows.append(row)
                say(f"round, {tenants:,} tenants waiting, {name}: p50 {row['p50_ms']:.2f} ms, "
                    f"p90 {row['p90_ms']:.2f} ms")  # fmt: skip
            _define(url, definitions[HEAD])  # head's, before the next load
    return rows


def wide_rounds(say=print) -> list[dict[str, Any]]:
    """One round that fills WIDE_SLOTS free slots, 10,000 tenants waiting, each call rolled
    back (so every call sees the same rows): the walk's cost as the free slots grow."""
    definitions = _definitions()
    rows = []
    with common.fresh_database("sched_bench_tenants") as url:
        _load(url, TENANTS[-1])
        samples: dict[str, list[float]] = {name: [] for name in definitions}
        for _ in range(WIDE_REPEAT):
            for name, statements in definitions.items():
                _define(url, statements)
                with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
                    for timed in (False, True):  # the first call makes the plans
                        started = time.perf_counter()
                        cur.execute(
                            "SELECT count(run_id) FROM scheduler_admission_round(%s, %s, 2, "
                            "NULL, %s)",
                            (IN_PROGRESS_TENANTS + WIDE_SLOTS, WIDE_SLOTS, LOCK_KEY),
                        )
                        admitted = cur.fetchone()[0]
                        if timed:
                            samples[name].append(time.perf_counter() - started)
                        conn.rollback()
        for name, values in samples.items():
            row = {
                "function": name,
                "tenants": TENANTS[-1],
                "free_slots": WIDE_SLOTS,
                "admitted": admitted,
                "p50_ms": round(1000 * statistics.median(values), 1),
            }
            rows.append(row)
            say(f"round filling {WIDE_SLOTS:,} slots, {TENANTS[-1]:,} tenants waiting, {name}: "
                f"p50 {row['p50_ms']:.1f} ms")  # fmt: skip
    return rows


def _pile(url: str, retries: int) -> None:
    """Ten tenants with a fire waiting, and tenant `pile` with `retries` failed runs whose
    backoff ended in the last day (a failing handler, long backoffs, a backfill)."""
    _load(url, 10)
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("SELECT id FROM triggers LIMIT 1")
        (trigger_id,) = cur.fetchone()
        with factories.transaction(url) as runs:
            factories.make_runs(
                runs, retries, returning=False, trigger_id=trigger_id, tenant_id="pile",
                kind="scheduled",
                scheduled_for=factories.sql("now() - interval '2 days' + n * interval '10 ms'"),
                idempotency_key=factories.sql("'pile:' || n"), attempt=1,
                not_before=factories.sql("now() - interval '1 day' + n * interval '10 ms'"),
            )  # fmt: skip
        cur.execute("VACUUM ANALYZE runs")


def retry_pile(say=print) -> list[dict[str, Any]]:
    """Round time with one tenant's pile of due retries, head's round against 0010's."""
    definitions = {name: _definitions()[name] for name in (HEAD, "walk (0010)")}
    rows = []
    with common.fresh_database("sched_bench_tenants") as url:
        for retries in PILES:
            _pile(url, retries)
            for name, statements in definitions.items():
                _define(url, statements)
                _rounds(url, statements, PILE_ROUNDS)  # warm: the pages, the plans
                ms = sorted(1000 * v for v in _rounds(url, statements, PILE_ROUNDS))
                row = {
                    "function": name,
                    "due_retries": retries,
                    "p50_ms": round(statistics.median(ms), 3),
                    "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3),
                    "rounds": len(ms),
                }
                rows.append(row)
                say(f"round, one tenant with {retries:,} due retries, {name}: p50 "
                    f"{row['p50_ms']:.2f} ms, p90 {row['p90_ms']:.2f} ms")  # fmt: skip
    return rows


def end_to_end(redis_url: str, runs: int = E2E_RUNS, say=print) -> list[dict[str, Any]]:
    """bench.e2e_lag with `runs` runs of `runs` tenants, and of 10 (migrated to head)."""
    rows = []
    for tenants, label in ((runs, "walk (0010)"), (10, "walk (0010)")):
        row = e2e_lag.run_once(runs, 8, redis_url, dispatch=False, tenants=tenants, revision="head")
        row.update(function=label, tenants=tenants)
        rows.append(row)
        say(f"end to end, {runs:,} runs of {tenants:,} tenants, {label}: lag p99 "
            f"{row['lag_p99']:.2f} s, {row['runs_per_second']:.0f} runs/s")  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=E2E_RUNS, help="end-to-end runs")
    parser.add_argument("--redis-url", default=common.bench_redis_url())
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--only-pile", action="store_true", help="only the retry pile")
    args = parser.parse_args(argv)
    if args.only_pile:
        result = {"pile": retry_pile()}
        if args.json:
            Path(args.json).write_text(json.dumps(result, default=str))
        return result
    result = {
        "pile": retry_pile(),
        "rounds": rounds(),
        "wide": wide_rounds(),
        "e2e": end_to_end(args.redis_url, args.runs),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, default=str))
    return result


if __name__ == "__main__":
    main()
