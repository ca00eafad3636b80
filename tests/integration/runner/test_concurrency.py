"""Bounded concurrency end to end: real worker processes, the real broker, limiter and
database. The handler (tests/integration/runner/probe.py) records in Redis how many runs
execute at once; the workers have more processes than the limits allow, so only the
limiter can keep the count down.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.integration.runner.workers import Workers, wait_for, worker_env

pytestmark = pytest.mark.slow

PROBE = {"type": "task", "name": "test.probe"}


@pytest.fixture()
def pool(settings, tmp_path) -> Callable[..., Workers]:
    """Start two worker processes of six children each with the given limits."""
    started: list[Workers] = []

    def start(*, max_running: int, per_tenant: int) -> Workers:
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
        harness.run(trigger_id, scheduled_for=start + timedelta(microseconds=n))
        for n in range(count)
    ]


def finished(harness, total: int) -> Callable[[], bool]:
    return lambda: harness.statuses().get("succeeded", 0) == total


def peak(harness, key: str) -> int:
    return int(harness.redis.get(key) or 0)


def test_two_hundred_slow_runs_never_exceed_max_running_and_all_finish(
    harness, pool, publish
) -> None:
    run_ids = make_runs(harness, count=200, tenant="tenant-a", sleep=0.1)
    pool(max_running=5, per_tenant=5)

    publish(run_ids)
    wait_for(finished(harness, 200), timeout=120, every=0.5)

    assert harness.statuses() == {"succeeded": 200}, "every run finished; none was dropped"
    assert peak(harness, "probe:max") == 5, "the limit was reached and never passed"
    assert harness.redis.zcard("{sched-slots}:global") == 0, "every slot was given back"


def test_a_big_tenant_cannot_starve_a_small_one(harness, pool, publish) -> None:
    # Runs long enough that the big tenant needs ~8 s in all, so the check below measures
    # slot fairness rather than how fast a loaded machine delivers messages.
    big = make_runs(harness, count=120, tenant="big", sleep=0.2)
    small = make_runs(harness, count=6, tenant="small", sleep=0.1)
    pool(max_running=4, per_tenant=3)

    publish(big + small)  # the small tenant's runs queue behind all of the big one's
    wait_for(finished(harness, 126), timeout=120, every=0.5)

    assert peak(harness, "probe:max") <= 4
    assert peak(harness, "probe:max:big") == 3
    big_done = sorted(float(t) for t in harness.redis.lrange("probe:done:big", 0, -1))
    small_done = sorted(float(t) for t in harness.redis.lrange("probe:done:small", 0, -1))
    # The slot the big tenant may never take serves the small one: all of its runs are done
    # while most of the big tenant's are still waiting.
    assert len(small_done) == 6
    assert small_done[-1] < statistics.quantiles(big_done, n=4)[2]
