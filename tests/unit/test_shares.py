"""A tick's fair shares (app/shares.py) against a model: a round robin, one pick at a time."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import hypothesis
from hypothesis import strategies as st

from app.shares import TenantShares

T0 = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
SETTINGS = hypothesis.settings(deadline=None, database=None, derandomize=True, max_examples=400)


def model(due: list[tuple[str, int, datetime]], size: int) -> list[Counter]:
    """Every tenant's earliest before any tenant's next, most overdue tenant first in a
    round; cut into batches of `size`."""
    order = [t for t, n, first in sorted(due, key=lambda r: (r[2], r[0])) if n > 0]
    left = {t: n for t, n, _ in due}
    picks = []
    while any(left[t] for t in order):
        for tenant in order:
            if left[tenant]:
                picks.append(tenant)
                left[tenant] -= 1
    return [Counter(picks[i : i + size]) for i in range(0, len(picks), size)]


def batches(shares: TenantShares, size: int) -> list[Counter]:
    out = []
    while taken := shares.take(size):
        assert sum(n for _, n in taken) <= size
        assert all(n > 0 for _, n in taken)
        out.append(Counter(dict(taken)))
    return out


due_lists = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 30)), min_size=0, max_size=25
).map(lambda rows: [(f"t{i:02d}", n, T0 + timedelta(seconds=s)) for i, (n, s) in enumerate(rows)])


@SETTINGS
@hypothesis.given(due_lists, st.integers(1, 60))
def test_the_batches_are_the_round_robin_cut_into_batches(due, size):
    assert batches(TenantShares(due), size) == model(due, size)


def test_a_small_tenant_due_with_a_burst_is_in_the_first_batch():
    due = [("burst", 100_000, T0), *((f"small-{n}", 1, T0) for n in range(10))]
    shares = TenantShares(due)

    first = dict(shares.take(500))

    assert all(first[f"small-{n}"] == 1 for n in range(10))
    assert first["burst"] == 490
    assert shares.take(500) == [("burst", 500)]  # one share: the cost is per tenant


def test_with_more_tenants_than_a_batch_the_most_overdue_go_first():
    due = [(f"t{n}", 2, T0 + timedelta(seconds=n)) for n in range(5)]
    shares = TenantShares(due)

    assert shares.take(3) == [("t0", 1), ("t1", 1), ("t2", 1)]
    assert shares.take(3) == [("t3", 1), ("t4", 1), ("t0", 1)]
    assert shares.remaining == 4


def test_nothing_due_gives_nothing():
    assert TenantShares([]).take(10) == []
    assert TenantShares([("t", 0, T0)]).take(10) == []
