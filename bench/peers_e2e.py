"""End-to-end side-by-side: `python -m bench.peers_e2e [--triggers 1000 10000] [--repeat 1]`.

bench.peers times how fast each scheduler puts N due messages on the broker. Since
admission (DESIGN section 12) this service's tick no longer puts every due run on the
broker: it commits them and hands the broker only as many as there are free slots, the
rest following as runs finish. So the comparison that stays meaningful is end to end: the
same N schedules due at the same instant T, the same Celery worker settings (prefork,
concurrency 8, prefetch 1, late acks, the `runs` queue on the same Redis), timed from T
until the last run has finished.

- `ours`: the product's worker (`celery -A tasks worker`, `echo` handler, no sleep) with
  MAX_RUNNING = MAX_RUNNING_PER_TENANT = the concurrency; our tick (bench.peer_process) at
  T commits the N runs and admits; each finishing run admits the next. Last run finished:
  max(finished_at) in PostgreSQL.
- `celery-beat`, `redbeat`: the peers of bench.peers feeding bench.peer_worker, a Celery
  worker whose `run_trigger` is a no-op that counts itself done in Redis.
- `celery-bare`: no scheduler at all, N `run_trigger` messages published at T straight
  to the same peer worker: the ceiling of run throughput on this broker and these worker
  settings (issue 12: ours should reach 60% of it).

Every worker is started and warmed up (each pool process has run a task) before T.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import redis

from bench import common, peer_process, peer_worker, peers

PEERS = ("ours", "celery-beat", "redbeat", "celery-bare")
CEILING_PAIR = ("ours", "celery-bare")  # the throughput ratio's two sides
LABELS = {**peers.LABELS, "celery-bare": "bare Celery (no scheduler)"}
CONCURRENCY = 8
WARMUP = 16
POLL_SECONDS = 0.25
CELERY = os.path.join(os.path.dirname(sys.executable), "celery")


def _worker(peer: str, env: dict[str, str], log) -> subprocess.Popen:
    app = "tasks" if peer == "ours" else "bench.peer_worker"
    return subprocess.Popen(
        [CELERY, "-A", app, "worker", "-Q", peer_process.QUEUE, "-P", "prefork"]
        + ["-c", str(CONCURRENCY), "-n", f"e2e-{peer}@%h", "--without-gossip"]
        + ["--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
        cwd=peers.ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _finished_ours(conn) -> tuple[int, float | None]:
    """Runs finished so far and the last finish, on the poller's own connection (one for
    the whole wait: a connection per poll would cost PostgreSQL a backend start every time,
    CPU taken from the system being measured)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), EXTRACT(EPOCH FROM max(finished_at)) FROM runs "
            "WHERE finished_at IS NOT NULL AND kind <> 'manual'"
        )
        count, last = cur.fetchone()
        return int(count), float(last) if last is not None else None


def _query_all(url: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def _finished_peer(client: redis.Redis) -> tuple[int, float | None]:
    done, last = client.mget(peer_worker.DONE_KEY, peer_worker.LAST_KEY)
    return int(done or 0), float(last) if last else None


def _warm_up(peer: str, env: dict[str, str], client: redis.Redis) -> None:
    """Every pool process runs a task before T (imports, connections)."""
    if peer == "ours":
        from app import admission, config, db
        from bench.e2e_lag import insert_due, wait_finished
        from tasks import celery, publish
        from tasks.celery_app import use_broker

        os.environ.update(DATABASE_URL=env["DATABASE_URL"], REDIS_URL=env["REDIS_URL"])
        os.environ["BROKER_URL"] = env["REDIS_URL"]
        config.set_settings(None)
        db.dispose_engines()
        use_broker(celery, env["REDIS_URL"])
        warm = datetime.now(UTC) - timedelta(seconds=1)
        insert_due(env["DATABASE_URL"], WARMUP, due=warm, with_runs=True)
        limits = admission.Limits(max_running=CONCURRENCY, max_per_tenant=CONCURRENCY)
        admission.hand_off(db.get_engine(), limits, publish.enqueue_runs)
        wait_finished(env["DATABASE_URL"], warm, WARMUP, timeout=60)
        # Mark them so the count of the measured runs leaves them out.
        conn = psycopg2.connect(env["DATABASE_URL"])
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE runs SET kind = 'manual'")
        conn.close()
        db.dispose_engines()
        return
    app = peer_process._peer_app(env["REDIS_URL"])
    for n in range(WARMUP):
        app.send_task(peer_process.RUN_TASK, args=(f"warm-{n}",))
    deadline = time.monotonic() + 60
    while _finished_peer(client)[0] < WARMUP:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{peer}: warm-up runs not finished")
        time.sleep(0.05)
    client.delete(peer_worker.DONE_KEY, peer_worker.LAST_KEY)


def run_once(peer: str, count: int, redis_url: str, *, timeout: float) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    common.clean_redis(client)
    due = (datetime.now(UTC) + timedelta(minutes=15)).replace(second=0, microsecond=0)
    workdir = tempfile.mkdtemp(prefix="bench-peer-e2e-")
    env = {
        **os.environ,
        "PYTHONPATH": str(peers.ROOT),
        "REDIS_URL": redis_url,
        "BROKER_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "MAX_RUNNING": str(CONCURRENCY),
        "MAX_RUNNING_PER_TENANT": str(CONCURRENCY),
    }
    with peers._peer_database(peer, count, due) as url:
        if url:
            env.update(DATABASE_URL=url, DISPATCH_TIME_BUDGET_SECONDS="600")
        with (
            tempfile.TemporaryFile("w+b") as log,
            tempfile.TemporaryFile("w+") as err,
            ExitStack() as stack,
        ):
            worker = _worker(peer, env, log)
            proc = None
            try:
                time.sleep(2)
                _warm_up(peer, env, client)
                command = [sys.executable, "-m", "bench.peer_process", peer, str(count)]
                command += [due.isoformat(), redis_url, workdir]
                proc = subprocess.Popen(
                    command, cwd=peers.ROOT, env=env, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=err, text=True,
                )  # fmt: skip
                peers._wait_ready(proc, timeout=900)
                due_at = time.time() + 3.0
                proc.stdin.write(f"{due_at!r}\n")
                proc.stdin.flush()
                if peer == "ours":
                    poller = stack.enter_context(closing(psycopg2.connect(url)))
                    poller.autocommit = True
                finished: Callable[[], tuple[int, float | None]] = (
                    (lambda: _finished_ours(poller)) if peer == "ours"
                    else (lambda: _finished_peer(client))
                )  # fmt: skip
                done, last = 0, None
                while time.time() < due_at + timeout:
                    done, last = finished()
                    if done >= count:
                        break
                    # Each side stamps its last finish itself: how often it is looked at
                    # only decides when the wait ends, not the figure.
                    time.sleep(POLL_SECONDS)
                if peer == "ours" and done < count:
                    sql = "SELECT status, kind, count(*) FROM runs GROUP BY 1, 2"
                    statuses = _query_all(url, sql)
                    sys.stderr.write(f"ours not finished: {statuses}\n")
            except BaseException:
                err.seek(0)
                log.seek(0)
                raise RuntimeError(
                    f"{peer} N={count}: {err.read()[-2000:]} {log.read()[-2000:]!r}"
                ) from None
            finally:
                if proc is not None:
                    peers._stop(proc, gentle=peer in ("ours", "celery-bare"))
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
    common.clean_redis(client)
    client.close()
    shutil.rmtree(workdir, ignore_errors=True)
    ok = done >= count and last is not None
    seconds = (last - due_at) if ok else None
    return {
        "peer": peer,
        "n": count,
        "finished": ok,
        "done": done,
        "seconds": seconds,
        "runs_per_second": count / seconds if ok else None,
    }


def compare(
    counts: list[int],
    *,
    repeat: int,
    timeout: float,
    redis_url: str,
    peers_run: tuple[str, ...] = PEERS,
    say: Callable[[str], None] = print,
    ceiling_repeat: int | None = None,
) -> dict[str, Any]:
    """Every peer at every N (`repeat` runs each, taking turns; ours and bare Celery, the
    two sides of the throughput ratio, `ceiling_repeat` runs each, default `repeat`);
    medians, and ratios to ours."""
    ceiling_repeat = ceiling_repeat or repeat
    rows = []
    given_up: set[str] = set()
    previous: dict[str, float] = {}
    previous_n: dict[str, int] = {}
    for count in counts:
        for peer, seconds in previous.items():
            # A peer whose rate at the previous N projects past 2/3 of the cap is not run
            # (celery beat's per-entry cost grows with N, so the projection flatters it).
            if peer != "ours" and seconds * count / previous_n[peer] > timeout * 2 / 3:
                given_up.add(peer)
        samples: dict[str, list[dict[str, Any]]] = {p: [] for p in peers_run if p not in given_up}
        for turn in range(max(repeat, ceiling_repeat)):
            for peer in samples:
                if samples[peer] and not samples[peer][-1]["finished"]:
                    continue
                if turn >= (ceiling_repeat if peer in CEILING_PAIR else repeat):
                    continue
                sample = run_once(peer, count, redis_url, timeout=timeout)
                samples[peer].append(sample)
                say(
                    f"e2e {peer:12} N={count:>6}: "
                    + (
                        f"{sample['seconds']:.2f} s ({sample['runs_per_second']:.0f} runs/s)"
                        if sample["finished"]
                        else f"not finished in {timeout:.0f} s ({sample['done']} done)"
                    )
                )
        for peer in peers_run:
            if peer in given_up:
                rows.append({"peer": peer, "label": LABELS[peer], "n": count, "finished": False,
                             "skipped": True})  # fmt: skip
                previous.pop(peer, None)
                continue
            done = [s for s in samples[peer] if s["finished"]]
            row: dict[str, Any] = {"peer": peer, "label": LABELS[peer], "n": count}
            row["samples"] = samples[peer]
            row["finished"] = len(done) == len(samples[peer])
            if row["finished"]:
                row["seconds"] = common.summary([s["seconds"] for s in done])
                row["runs_per_second"] = common.summary([s["runs_per_second"] for s in done])
                previous[peer], previous_n[peer] = row["seconds"]["median"], count
            else:
                row["timeout_seconds"] = timeout
                row["done"] = samples[peer][-1]["done"]
                given_up.add(peer)
            rows.append(row)
    ours = {r["n"]: r for r in rows if r["peer"] == "ours" and r["finished"]}
    for row in rows:
        base = ours.get(row["n"])
        if row["peer"] == "ours" or base is None:
            continue
        if row["finished"]:
            row["time_ratio"] = row["seconds"]["median"] / base["seconds"]["median"]
        elif not row.get("skipped"):
            row["time_ratio_at_least"] = timeout / base["seconds"]["median"]
    return {
        "rows": rows,
        "timeout_seconds": timeout,
        "repeat": repeat,
        "ceiling_repeat": ceiling_repeat,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--ceiling-repeat", type=int, help="runs of ours and bare Celery (default: --repeat)"
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--redis-url", default=common.bench_redis_url())
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    results = compare(
        sorted(args.triggers),
        repeat=args.repeat,
        timeout=args.timeout,
        redis_url=args.redis_url,
        peers_run=tuple(args.peers),
        ceiling_repeat=args.ceiling_repeat,
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out)
    return results


if __name__ == "__main__":
    main()
