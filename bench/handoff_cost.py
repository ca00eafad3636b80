"""Cost of one hand-off: `python -m bench.handoff_cost [--waiting 1000] [--rounds 200]`.

Why: end to end, every finishing run pays one hand-off (app/admission.py) before the
next run can start; this times it alone. A fresh database with `--waiting` pending runs of
ten tenants, MAX_RUNNING = MAX_RUNNING_PER_TENANT = 8, slots full; each round finishes one
admitted run (an UPDATE, as a worker's finish does) and times `admission.admit` (the
advisory lock, the overlap statement and the admitting statement, one transaction) and,
apart, each of its statements. Prints milliseconds per hand-off: median, p90, max.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
from psycopg2.extras import execute_values

from bench import common


def _statements() -> tuple[Any, Any] | None:
    """Admission's overlap and admitting statements, wherever the code keeps them (the
    restructure of issue 15 moved them to app.queries.run_queue); None if not found."""
    for module_name, prefix in (("app.admission", ""), ("app.queries.run_queue", "_")):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found = (
            getattr(module, f"{prefix}SKIP_OVERLAPPING", None),
            getattr(module, f"{prefix}ADMIT", None),
        )
        if all(statement is not None for statement in found):
            return found
    return None


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    with common.fresh_database("sched_bench_handoff") as url:
        due = datetime.now(UTC) - timedelta(seconds=1)
        common.insert_triggers(url, args.waiting, next_run_at=due, cron=None, run_at=due)
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id, tenant_id FROM triggers")
            rows = [(str(uuid.uuid4()), str(t), tenant, due, f"{t}:x") for t, tenant in cur]
            execute_values(
                cur,
                "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, idempotency_key) "
                "VALUES %s",
                rows,
            )
        os.environ["DATABASE_URL"] = url
        from app import admission, config, db

        config.set_settings(None)
        db.dispose_engines()
        engine = db.get_engine()
        limits = admission.Limits(max_running=8, max_per_tenant=8)
        admission.admit(engine, limits)
        statements = _statements()
        whole, overlap, admit_only = [], [], []
        for _ in range(args.rounds):
            with conn, conn.cursor() as cur:
                cur.execute(
                    "UPDATE runs SET status = 'succeeded', finished_at = now() WHERE id = "
                    "(SELECT id FROM runs WHERE status = 'admitted' LIMIT 1)"
                )
            started = time.perf_counter()
            admitted, _ = admission.admit(engine, limits)
            whole.append(1000 * (time.perf_counter() - started))
            assert len(admitted) == 1, admitted
            if statements is None:
                continue
            # The same statements one by one (rolled back), to see which costs what.
            skip_overlapping, admit = statements
            with engine.connect() as c:
                t0 = time.perf_counter()
                c.execute(skip_overlapping)
                t1 = time.perf_counter()
                c.execute(
                    admit,
                    {"max_running": 9, "max_per_tenant": 9, "factor": admission.CANDIDATE_FACTOR},
                )
                t2 = time.perf_counter()
                c.rollback()
            overlap.append(1000 * (t1 - t0))
            admit_only.append(1000 * (t2 - t1))
        db.dispose_engines()
        conn.close()
    figures = {
        "waiting": args.waiting,
        "handoff_ms_median": statistics.median(whole),
        "handoff_ms_p90": common.percentile(whole, 90),
        "handoff_ms_max": max(whole),
        "overlap_statement_ms_median": statistics.median(overlap) if overlap else None,
        "admit_statement_ms_median": statistics.median(admit_only) if admit_only else None,
    }
    print(json.dumps(figures), flush=True)
    return figures


if __name__ == "__main__":
    main()
