"""Bounded concurrency end to end: real worker processes, the real broker and database.
The handler (tests/integration/runner/probe.py) records in Redis how many runs execute at
once, and a sampler reads the runs table while the burst drains; the workers have more
processes than the limits allow, so only admission can keep the count down. The runs wait
`pending` in PostgreSQL: one hand-off starts the burst, then each finishing run hands its
slot on (no tick runs here).
"""

from __future__ import annotations

import statistics
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.integration.runner.workers import Workers, hand_off, wait_for, worker_env

pytestmark = pytest.mark.slow

PROBE = {"type": "task", "name": "test.probe"}


@pytest.fixture()
def pool(settings, tmp_path) -> Callable[..., Workers]:
    """Start two worker processes of six children each with the given limits."""
    started: list[Workers] = []

    def start(*, max_running: int, per_tenant: int, harness=None) -> Workers:
        if harness is not None:
            harness.configure(max_running=max_running, max_running_per_tenant=per_tenant)
        env = worker_env(settings, MAX_RUNNING=str(max_running),
                         MAX_RUNNING_PER_TENANT=str(per_tenant),
                         HANDLER_MODULES="tests.integration.runner.probe")  # fmt: skip
        workers = Workers(env, tmp_path)
        started.append(workers)
        for name in ("w1", "w2"):
            workers.start(name, concurrency=6)
        return workers

    yield start
    for workers in started:
        workers.stop_all()


def make_runs(harness, *, count: int, tenant: str, sleep: float) -> list:
    trigger_id = harness.trigger(action=PROBE, payload={"sleep": sleep}, tenant_id=tenant)
    start = harness.clock.now()
    return [
        harness.run(trigger_id, scheduled_for=start + timedelta(microseconds=n), status="pending")
        for n in range(count)
    ]


def finished(harness, total: int) -> Callable[[], bool]:
    return lambda: harness.statuses().get("succeeded", 0) == total


def peak(harness, key: str) -> int:
    return int(harness.redis.get(key) or 0)


@pytest.fixture()
def sampler(harness) -> Iterator[list[Counter]]:
    """Samples of the runs holding a slot, per tenant ('*': all), every 20 ms."""
    samples: list[Counter] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with harness.engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT tenant_id, count(*) FROM runs "
                        "WHERE status IN ('admitted', 'running') GROUP BY tenant_id"
                    )
                ).all()
            counts = Counter(dict(rows))
            counts["*"] = sum(counts.values())
            samples.append(counts)
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    yield samples
    stop.set()
    thread.join()


def test_two_hundred_slow_runs_never_exceed_max_running_and_all_finish(
    harness, pool, publish, sampler
) -> None:
    make_runs(harness, count=100, tenant="tenant-a", sleep=0.1)
    make_runs(harness, count=100, tenant="tenant-b", sleep=0.1)
    pool(max_running=5, per_tenant=3, harness=harness)

    assert len(hand_off(harness, publish).admitted) == 5
    wait_for(finished(harness, 200), timeout=120, every=0.5)

    assert harness.statuses() == {"succeeded": 200}, "every run finished; none was dropped"
    assert peak(harness, "probe:max") == 5, "the limit was reached and never passed"
    assert peak(harness, "probe:max:tenant-a") == 3
    assert len(sampler) > 20
    assert max(s["*"] for s in sampler) == 5, "slots held (admitted + running) <= MAX_RUNNING"
    assert max(max(s["tenant-a"], s["tenant-b"]) for s in sampler) == 3


def test_a_big_tenant_cannot_starve_a_small_one(harness, pool, publish) -> None:
    # Runs long enough that the big tenant needs ~8 s in all, so the check below measures
    # slot fairness rather than how fast a loaded machine delivers messages.
    make_runs(harness, count=120, tenant="big", sleep=0.2)
    make_runs(harness, count=6, tenant="small", sleep=0.1)
    pool(max_running=4, per_tenant=3, harness=harness)

    # The small tenant's runs wait behind all of the big one's, by fire time.
    hand_off(harness, publish)
    wait_for(finished(harness, 126), timeout=120, every=0.5)

    assert peak(harness, "probe:max") <= 4
    assert peak(harness, "probe:max:big") == 3
    big_done = sorted(float(t) for t in harness.redis.lrange("probe:done:big", 0, -1))
    small_done = sorted(float(t) for t in harness.redis.lrange("probe:done:small", 0, -1))
    # Tenants take turns: all of the small tenant's runs are done while most of the big
    # tenant's are still waiting.
    assert len(small_done) == 6
    assert small_done[-1] < statistics.quantiles(big_done, n=4)[0]
