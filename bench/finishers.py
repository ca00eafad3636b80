"""Admission's ceiling: `python -m bench.finishers [--finishers 1 2 4 8] [--runs 3000]`.

Issue 27, "past one machine": how many runs a second one PostgreSQL primary hands on when
nothing but finishing costs anything. No Celery, no handler: `--finishers` threads, each
with its own connection, play worker processes. Each holds a claimed run and finishes it
as a worker does (`admission.finish_succeeded`: the finish, an admission round and the
kept run started, one round trip), then, as the runner does, hands off again when the
round did not serve it (`admission.hand_off`, keeping a run); runs admitted for others
go to an in-process queue that stands in for the broker, from which an idle finisher
claims (`scheduler_claim_v2`). MAX_RUNNING = MAX_RUNNING_PER_TENANT = the finishers;
`--runs` pending runs of ten tenants, on a fresh database of a private cluster (as
bench.per_run_cost's; `--server URL` for an existing server). Prints runs per second for
each number of finishers, from the first hand-off to the last finish.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import common, e2e_lag, per_run_cost


def _finisher(engine, limits, inbox: queue.Queue, done: list[int], total: int, name: str):
    from app import admission, db
    from app.queries import runs as q
    from app.run_status import Delivery

    def publish(ids) -> None:
        for run_id in ids:
            inbox.put(run_id)

    current = None
    while sum(done) < total:
        with db.statements(engine) as conn:
            if current is None:
                try:
                    run_id = inbox.get(timeout=0.05)
                except queue.Empty:
                    continue
                claim = q.claim(conn, run_id, worker=name)
                if claim.decision != Delivery.RUNNING:
                    continue
                current = claim.run
            _, first = admission.finish_succeeded(
                conn, limits, current.id, attempt=current.attempt, result="{}",
                keep_worker=name,
            )  # fmt: skip
            done.append(1)
            handed = admission.hand_off(engine, limits, publish, conn=conn, keep=True, first=first)
            current = None
            if handed.kept is not None:
                if handed.claimed is not None:
                    current = handed.claimed[0]
                else:
                    claim = q.claim(conn, handed.kept, worker=name)
                    current = claim.run if claim.decision == Delivery.RUNNING else None


def measure(url: str, finishers: int, runs: int) -> dict[str, Any]:
    """Runs per second with `finishers` threads draining `runs` pending runs on `url`."""
    from app import admission, config, db

    os.environ.update(DATABASE_URL=url, MAX_RUNNING=str(finishers),
                      MAX_RUNNING_PER_TENANT=str(finishers))  # fmt: skip
    config.set_settings(None)
    db.dispose_engines()
    e2e_lag.insert_due(url, runs, due=datetime.now(UTC) - timedelta(seconds=5), with_runs=True)
    engine = db.get_engine()
    limits = admission.Limits(max_running=finishers, max_per_tenant=finishers)
    inbox: queue.Queue = queue.Queue()
    done: list[int] = []
    threads = [
        threading.Thread(target=_finisher, args=(engine, limits, inbox, done, runs, f"f{n}"))
        for n in range(finishers)
    ]
    started = time.perf_counter()
    admission.hand_off(engine, limits, lambda ids: [inbox.put(i) for i in ids])
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    db.dispose_engines()
    return {"finishers": finishers, "runs": len(done), "seconds": round(seconds, 2),
            "runs_per_second": round(len(done) / seconds, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finishers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--server", help="measure on this server (default: a private cluster)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with nullcontext(args.server) if args.server else per_run_cost.private_cluster() as server:
        for finishers in args.finishers:
            os.environ["DATABASE_URL"] = server
            with common.fresh_database("sched_bench_finishers") as url:
                rows.append(measure(url, finishers, args.runs))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out)
    return rows


if __name__ == "__main__":
    main()
