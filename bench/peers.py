"""Side-by-side: `python -m bench.peers [--triggers 1000 10000 100000] [--repeat 3]`.

The same N schedules, all due at the same minute M, dispatched into the same Redis broker by

- `ours`: this service's dispatcher tick (`tasks.dispatch.tick`, what both the beat-sent
  `dispatch_due_triggers` task and `python -m tasks.dispatch --once` run) over N due triggers
  in a fresh PostgreSQL database;
- `celery-beat`: Celery's default scheduler (`celery.beat.PersistentScheduler`) with N
  `crontab(minute=M)` entries, driven by `celery.beat.Service`, the loop `celery beat` runs;
- `redbeat`: celery-redbeat's `RedBeatScheduler` with the same N entries, same loop.

Each peer publishes one `run_trigger` message per schedule to the `runs` queue. Protocol, the
same for the three:

1. The peer starts in its own process and sets up (ours: imports; the beats: their N entries
   stored in the shelve file or in Redis), then says it is ready.
2. The due instant T is set a few seconds ahead. To avoid waiting up to a minute for a real
   minute boundary each run, the peer's clock (`Celery.now`, which every schedule and both
   schedulers read; the `now` argument of our tick) runs M - T ahead of the wall clock, so
   minute M begins exactly at T. No scheduler code is changed.
3. This process polls LLEN of the queue from T until it holds N messages (or the time cap
   passes) and reads the peer's CPU time over that window (psutil) and its peak RSS over its
   whole life, set-up included (VmHWM, read before it is stopped; see common.peak_rss_mb).

The server side is reported too (noisy: the servers are shared with other work on this
machine): PostgreSQL CPU of our tick's backends, and Redis `used_cpu` over the window.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import redis

from bench import common, peer_process
from bench import dispatch as dispatch_bench

PEERS = ("ours", "celery-beat", "redbeat")
LABELS = {
    "ours": "this dispatcher",
    "celery-beat": "celery beat (PersistentScheduler)",
    "redbeat": "celery-redbeat",
}
QUEUE = peer_process.QUEUE
REDBEAT_PREFIX = peer_process.REDBEAT_PREFIX
ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.005


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _backends_cpu(database: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `database` (seen in their titles)."""
    if not database:
        return {}
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            title = " ".join(proc.info["cmdline"] or ())
            if title.startswith("postgres:") and f" {database} " in title:
                found[proc.pid] = _cpu(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _committed(database: str) -> Callable[[], int]:
    """Counts the runs committed in our benchmark database (one connection, autocommit)."""
    import psycopg2

    from app import dbadmin

    conn = psycopg2.connect(dbadmin.with_database(dbadmin.server_url(), database))
    conn.autocommit = True

    def count() -> int:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs")
            return int(cur.fetchone()[0])

    return count


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _wait_ready(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("READY"):
                return line
            if not line:
                break
        if proc.poll() is not None:
            break
    raise RuntimeError("the peer did not get ready")


def _stop(proc: subprocess.Popen, *, gentle: bool) -> resource.struct_rusage:
    """Stop the peer (close its stdin, or SIGTERM) and reap it; return its rusage (zeros when
    it exited and was reaped already, as after a failed start)."""
    if proc.returncode is not None:
        return resource.struct_rusage((0,) * 16)
    if gentle:
        proc.stdin.close()
    else:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        time.sleep(0.05)
    proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def _clean_redis(client: redis.Redis) -> None:
    client.delete(QUEUE)
    for key in client.scan_iter(f"{REDBEAT_PREFIX}*", count=10_000):
        client.delete(key)


def run_once(
    peer: str, count: int, redis_url: str, *, timeout: float, lead: float = 3.0
) -> dict[str, Any]:
    """One timed dispatch of `count` schedules by `peer`; see the module docstring."""
    client = redis.Redis.from_url(redis_url)
    _clean_redis(client)
    # Any whole minute ahead of set-up works: the peer's clock is shifted onto it at T.
    due = (datetime.now(UTC) + timedelta(minutes=15)).replace(second=0, microsecond=0)
    workdir = tempfile.mkdtemp(prefix="bench-peer-")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING"}
    database = None
    try:
        with _peer_database(peer, count, due) as url:
            if url:
                database = url.rsplit("/", 1)[1]
                # As bench.dispatch: one tick takes everything, whatever N.
                env.update(DATABASE_URL=url, DISPATCH_TIME_BUDGET_SECONDS="600")
            command = [sys.executable, "-m", "bench.peer_process", peer, str(count)]
            command += [due.isoformat(), redis_url, workdir]
            with tempfile.TemporaryFile("w+") as err:
                started = time.monotonic()
                proc = subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
                try:
                    _wait_ready(proc, timeout=900)
                    result = _measure(proc, client, count, database, timeout=timeout, lead=lead)
                except Exception:
                    proc.kill()
                    proc.wait()
                    err.seek(0)
                    raise RuntimeError(f"{peer} at N={count} failed: {err.read()[-3000:]}")
                result["setup_seconds"] = result.pop("_ready_at") - started
                # Its own peak (set-up included), read while it lives: see common.peak_rss_mb.
                result["peak_rss_mb"] = common.peak_rss_mb(proc.pid)
                usage = _stop(proc, gentle=peer == "ours")
                if peer == "ours":
                    stats = json.loads(proc.stdout.read().strip().splitlines()[-1])
                    result["enqueued_by_tick"] = stats["enqueued"]
                proc.stdout.close()
    finally:
        _clean_redis(client)
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result["total_cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


def _measure(
    proc: subprocess.Popen,
    client: redis.Redis,
    count: int,
    database: str | None,
    *,
    timeout: float,
    lead: float,
) -> dict[str, Any]:
    ready_at = time.monotonic()
    peer = psutil.Process(proc.pid)
    due_at = time.time() + lead
    proc.stdin.write(f"{due_at!r}\n")
    proc.stdin.flush()
    time.sleep(max(0.0, due_at - time.time() - 0.05))
    idle_rss = peer.memory_info().rss / 2**20
    cpu_before, redis_before = _cpu(peer), _redis_cpu(client)
    backends_before = _backends_cpu(database)
    time.sleep(max(0.0, due_at - time.time()))
    first = None
    queued = 0
    committed = _committed(database) if database else None
    while True:
        queued = client.llen(QUEUE)
        now = time.time()
        if queued and first is None:
            first = now - due_at
        if committed is not None:
            # Ours hands the broker only what has a slot (admission, DESIGN section 12): it is
            # done when all N runs are committed, the durable queue the others do not have.
            if committed() >= count or now - due_at > timeout:
                now = time.time()
                break
            time.sleep(POLL_SECONDS * 4)
            continue
        if queued >= count or now - due_at > timeout:
            break
        time.sleep(POLL_SECONDS)
    if committed is not None:
        queued = committed()
    elapsed = now - due_at
    cpu = _cpu(peer) - cpu_before
    redis_cpu = _redis_cpu(client) - redis_before
    backends = _backends_cpu(database)
    pg_cpu = sum(cpu - backends_before.get(pid, 0.0) for pid, cpu in backends.items())
    time.sleep(0.2)  # anything published twice would show up now
    return {
        "_ready_at": ready_at,
        "finished": queued >= count,
        "seconds": elapsed,
        "first_message_seconds": first,
        "queued": queued,
        "queued_after": client.llen(QUEUE),
        "messages_per_second": queued / elapsed if elapsed > 0 else math.inf,
        "cpu_seconds": cpu,
        "idle_rss_mb": idle_rss,
        "postgres_cpu_seconds": pg_cpu if database else None,
        "redis_cpu_seconds": redis_cpu,
    }


@contextmanager
def _peer_database(peer: str, count: int, due: datetime) -> Iterator[str | None]:
    """Ours: a fresh database with `count` triggers due at `due`; the beats: none (None)."""
    if peer != "ours":
        yield None
        return
    with common.fresh_database("sched_bench_peers") as url:
        expressions = dispatch_bench.expressions_due_at(due)
        common.insert_triggers(url, count, next_run_at=due, cron=None, expressions=expressions)
        yield url


def compare(
    counts: list[int],
    *,
    repeat: int,
    timeout: float,
    redis_url: str,
    repeat_large: int = 1,
    peers: tuple[str, ...] = PEERS,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every peer at every N, `repeat` runs each (`repeat_large` from N = 100,000 on).

    The runs of one N take turns (ours, celery beat, redbeat, ours, ...) so that the noise of
    a shared machine falls on all of them alike. A peer that did not finish an N within
    `timeout` is not run at larger N, nor is one whose rate at the previous N would need more
    than the cap; both are reported as not finished.
    """
    rows: list[dict[str, Any]] = []
    previous: dict[str, dict[str, Any]] = {}
    for count in counts:
        samples: dict[str, list[dict[str, Any]]] = {}
        for peer in peers:
            skip = _skip_reason(previous.get(peer), count, timeout) if peer != "ours" else None
            if skip:
                say(f"{peer:12} N={count:>7}: not run: {skip}")
                previous[peer] = {"peer": peer, "n": count, "finished": False, "skipped": skip}
            else:
                samples[peer] = []
        for _ in range(repeat if count < 100_000 else repeat_large):
            for peer, done in samples.items():
                if done and not done[-1]["finished"]:
                    continue  # once over the cap is enough
                done.append(run_once(peer, count, redis_url, timeout=timeout))
                say(_line(peer, count, done[-1], timeout))
        for peer in peers:
            if peer in samples:
                previous[peer] = {"peer": peer, "n": count, **_aggregate(samples[peer], timeout)}
            rows.append({"label": LABELS[peer], **previous[peer]})
    _ratios(rows)
    return {"rows": rows, "timeout_seconds": timeout, "repeat": repeat}


def _skip_reason(previous: dict[str, Any] | None, count: int, timeout: float) -> str | None:
    if previous is None:
        return None
    if not previous["finished"]:
        return f"did not finish N={previous['n']:,} within {timeout:.0f} s"
    projected = previous["seconds"]["median"] * count / previous["n"]
    if projected > timeout:
        return f"projected {projected:.0f} s from N={previous['n']:,}, over the {timeout:.0f} s cap"
    return None


def _aggregate(samples: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    done = [s for s in samples if s["finished"]]
    row: dict[str, Any] = {"runs": len(samples), "samples": samples}
    if len(done) < len(samples):
        worst = samples[-1]
        row.update(
            finished=False,
            skipped=None,
            queued_at_cap=worst["queued"],
            timeout_seconds=timeout,
            messages_per_second=common.summary([worst["messages_per_second"]]),
            peak_rss_mb=common.summary([worst["peak_rss_mb"]]),
            cpu_seconds=common.summary([worst["cpu_seconds"]]),
        )
        return row
    row["finished"] = True
    row["duplicates"] = max(s["queued_after"] - s["queued"] for s in done)
    for key in ("seconds", "messages_per_second", "cpu_seconds", "peak_rss_mb", "idle_rss_mb"):
        row[key] = common.summary([s[key] for s in done])
    for key in ("first_message_seconds", "setup_seconds", "redis_cpu_seconds"):
        row[key] = common.summary([s[key] for s in done])
    if done[0]["postgres_cpu_seconds"] is not None:
        row["postgres_cpu_seconds"] = common.summary([s["postgres_cpu_seconds"] for s in done])
    return row


def _ratios(rows: list[dict[str, Any]]) -> None:
    """Each peer's figures over ours at the same N (time, CPU, peak RSS; > 1: ours better)."""
    ours = {row["n"]: row for row in rows if row["peer"] == "ours" and row["finished"]}
    for row in rows:
        base = ours.get(row["n"])
        if row["peer"] == "ours" or base is None:
            continue
        if row["finished"]:
            row["time_ratio"] = row["seconds"]["median"] / base["seconds"]["median"]
        elif row.get("timeout_seconds"):
            # A lower bound: the peer needed more than the cap.
            row["time_ratio_at_least"] = row["timeout_seconds"] / base["seconds"]["median"]
        if "cpu_seconds" in row:
            row["cpu_ratio"] = row["cpu_seconds"]["median"] / base["cpu_seconds"]["median"]
            row["rss_ratio"] = row["peak_rss_mb"]["median"] / base["peak_rss_mb"]["median"]


def _line(peer: str, count: int, sample: dict[str, Any], timeout: float) -> str:
    if not sample["finished"]:
        return (
            f"{peer:12} N={count:>7}: did not finish in {timeout:.0f} s "
            f"({sample['queued']:,} of {count:,} queued); peak RSS "
            f"{sample['peak_rss_mb']:.1f} MB"
        )
    return (
        f"{peer:12} N={count:>7}: {sample['seconds']:7.2f} s to queue all "
        f"({sample['messages_per_second']:>8,.0f}/s, first after "
        f"{sample['first_message_seconds']:.3f} s); CPU {sample['cpu_seconds']:.2f} s; "
        f"peak RSS {sample['peak_rss_mb']:.1f} MB (set-up {sample['setup_seconds']:.1f} s)"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repeat-large", type=int, default=1, help="runs at N >= 100,000")
    parser.add_argument("--timeout", type=float, default=240.0, help="cap per run, seconds")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--redis-url", default=common.bench_redis_url())
    args = parser.parse_args(argv)
    results = compare(
        sorted(args.triggers),
        repeat=args.repeat,
        repeat_large=args.repeat_large,
        timeout=args.timeout,
        redis_url=args.redis_url,
        peers=tuple(args.peers),
    )
    for row in results["rows"]:
        if "time_ratio" in row:
            print(f"{row['peer']:12} N={row['n']:>7}: {row['time_ratio']:.1f}x ours' time")
        elif "time_ratio_at_least" in row:
            print(f"{row['peer']:12} N={row['n']:>7}: over {row['time_ratio_at_least']:.0f}x")
    return results


if __name__ == "__main__":
    main()
