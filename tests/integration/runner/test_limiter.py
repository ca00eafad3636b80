"""The Redis slot semaphore: limits, tenant caps, atomicity and lease expiry."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from app import limiter

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture()
def slots(redis_client) -> limiter.Limiter:
    return limiter.Limiter(redis_client, max_running=3, max_per_tenant=2, lease_seconds=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_it_grants_up_to_the_global_limit(slots) -> None:
    grants = [slots.acquire(f"tenant-{n}", f"run-{n}", now=T0) for n in range(4)]
    assert [type(g).__name__ for g in grants] == ["Lease", "Lease", "Lease", "Denied"]
    assert grants[3].scope == "global"
    assert slots.in_use(now=T0) == 3


def test_a_tenant_at_its_cap_is_refused_while_another_tenant_gets_a_slot(slots) -> None:
    assert isinstance(slots.acquire("big", "r1", now=T0), limiter.Lease)
    assert isinstance(slots.acquire("big", "r2", now=T0), limiter.Lease)
    assert slots.acquire("big", "r3", now=T0) == limiter.Denied(scope="tenant")
    assert isinstance(slots.acquire("small", "r4", now=T0), limiter.Lease)
    assert slots.in_use(now=T0, tenant_id="big") == 2


def test_a_released_slot_can_be_taken_again(slots) -> None:
    leases = [slots.acquire(f"t{n}", f"r{n}", now=T0) for n in range(3)]
    slots.release(leases[0])
    assert isinstance(slots.acquire("t9", "r9", now=T0), limiter.Lease)


def test_a_dead_holders_slot_comes_back_when_its_lease_expires(slots) -> None:
    for n in range(3):
        slots.acquire(f"t{n}", f"r{n}", now=T0)  # three workers, then all killed
    assert isinstance(slots.acquire("t9", "r9", now=at(59)), limiter.Denied)
    assert isinstance(slots.acquire("t9", "r9", now=at(61)), limiter.Lease)


def test_renewing_keeps_a_lease_alive_past_its_first_expiry(slots) -> None:
    lease = slots.acquire("t", "r", now=T0)
    assert slots.renew(lease, now=at(50))
    assert slots.in_use(now=at(100)) == 1  # now held until 110 s
    assert slots.in_use(now=at(111)) == 0


def test_an_expired_lease_is_not_revived_by_a_late_renewal(slots) -> None:
    lease = slots.acquire("t", "r", now=T0)
    for n in range(3):
        slots.acquire(f"o{n}", f"o{n}", now=at(61))  # the expired lease was pruned
    assert not slots.renew(lease, now=at(62))
    assert slots.in_use(now=at(62)) == 3


def test_concurrent_acquirers_never_exceed_the_limit(redis_client) -> None:
    slots = limiter.Limiter(redis_client, max_running=5, max_per_tenant=5, lease_seconds=60)
    gate = threading.Barrier(40)
    granted: list[limiter.Lease] = []

    def grab(n: int) -> None:
        gate.wait()
        grant = slots.acquire(f"t{n % 4}", f"r{n}", now=T0)
        if isinstance(grant, limiter.Lease):
            granted.append(grant)

    threads = [threading.Thread(target=grab, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 5
    assert slots.in_use(now=T0) == 5


def test_a_node_limit_keeps_a_workers_last_process_free_and_its_slots_come_back(
    redis_client,
) -> None:
    node = limiter.Limiter(redis_client, max_running=10, max_per_tenant=10, lease_seconds=60,
                           node="celery@host-a", max_per_node=2)  # fmt: skip
    other = limiter.Limiter(redis_client, max_running=10, max_per_tenant=10, lease_seconds=60,
                            node="celery@host-b", max_per_node=2)  # fmt: skip
    first, second = (node.acquire("t", f"r{n}", now=T0) for n in range(2))
    assert node.acquire("t", "r3", now=T0) == limiter.Denied(scope="node")
    assert isinstance(other.acquire("t", "r4", now=T0), limiter.Lease), "other nodes unaffected"

    assert node.renew(first, now=at(30))
    node.release(second)
    assert isinstance(node.acquire("t", "r5", now=at(31)), limiter.Lease)
    assert redis_client.zscore("{sched-slots}:node:celery@host-a", first.member) == pytest.approx(
        at(90).timestamp()
    )
