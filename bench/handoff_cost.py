"""Cost of one hand-off: `python -m bench.handoff_cost [--waiting 1000] [--rounds 200]`.

Why: end to end, every finishing run pays one hand-off (app/admission.py) before the
next run can start; this times it alone. A fresh database with `--waiting` pending runs of
ten tenants, MAX_RUNNING = MAX_RUNNING_PER_TENANT = 8, slots full; each round finishes one
admitted run (an UPDATE, as a worker's finish does) and times `admission.admit`: one call of
the SQL function `scheduler_admission_round_v2` that admits, and one that finds nobody came by
since. Prints milliseconds per hand-off: median, p90, max.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg2

from bench import common
from tests import factories


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    with common.fresh_database("sched_bench_handoff") as url:
        due = datetime.now(UTC) - timedelta(seconds=1)
        common.insert_triggers(url, args.waiting, next_run_at=due, cron=None, run_at=due)
        with factories.transaction(url) as conn:
            factories.make_runs_for_triggers(conn, scheduled_for=due, key_suffix="x")
        conn = psycopg2.connect(url)
        os.environ["DATABASE_URL"] = url
        from app import admission, config, db

        config.set_settings(None)
        db.dispose_engines()
        engine = db.get_engine()
        limits = admission.Limits(max_running=8, max_per_tenant=8)
        admission.admit(engine, limits)
        whole = []
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
        db.dispose_engines()
        conn.close()
    figures = {
        "waiting": args.waiting,
        "handoff_ms_median": statistics.median(whole),
        "handoff_ms_p90": common.percentile(whole, 90),
        "handoff_ms_max": max(whole),
    }
    print(json.dumps(figures), flush=True)
    return figures


if __name__ == "__main__":
    main()
