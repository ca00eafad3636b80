"""Fair shares of a tick's due triggers: every tenant's earliest before any tenant's next.

docs/design.md section 17. Pure: no database, no clock. A tick learns how many triggers each
tenant has due (app/queries/triggers.py, `due_by_tenant`) and hands its batches out in the
order of a round robin over the tenants: one trigger of every tenant with one due, then a
second of every tenant with two, and so on; within a round, the tenant whose earliest
trigger is most overdue first. A batch is the next `size` picks of that order, as
(tenant, how many) shares, so a tenant with one fire due at midnight is in the tick's first
batch even when another tenant has 100,000 due at the same instant.

Rounds are handed out whole when they fit: with one tenant left, a batch is one share of
`size`, not `size` rounds of one, so the cost of a batch is that of its tenants, not of its
triggers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime


class TenantShares:
    """The round robin of one tick; `take(size)` hands out the next batch of it.

    Safe to share between a tick's batch loops (a lock guards it). Each share is what the
    tick claims for that tenant (earliest first); a claim may come back short (another
    dispatcher holds some rows) and the tick's last pass, by due time alone, picks up
    whatever the shares did not.
    """

    def __init__(self, due: Iterable[tuple[str, int, datetime]]) -> None:
        """`due`: (tenant, how many triggers it has due, its earliest due instant) each."""
        ordered = sorted((r for r in due if r[1] > 0), key=lambda r: (r[2], r[0]))
        self._left = {tenant: count for tenant, count, _ in ordered}
        self._round = [tenant for tenant, _, _ in ordered]  # tenants with one due this round
        self._cursor = 0  # the first tenant of `_round` not yet given its pick this round
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        """How many triggers the shares have not handed out yet."""
        with self._lock:
            return sum(self._left.values())

    def take(self, size: int) -> list[tuple[str, int]]:
        """The next batch: at most `size` triggers as (tenant, count) shares; [] when the
        round robin is over."""
        if size < 1:
            raise ValueError("size must be >= 1")
        with self._lock:
            shares: dict[str, int] = {}
            room = size
            while room and self._round:
                if self._cursor == 0:
                    room = self._whole_rounds(shares, room)
                    if not room or not self._round:
                        break
                rest = self._round[self._cursor :]
                picked = rest[:room]
                for tenant in picked:
                    self._give(shares, tenant, 1)
                room -= len(picked)
                self._cursor += len(picked)
                if self._cursor == len(self._round):  # the round is over: the next one
                    self._next_round()
            return list(shares.items())

    def _whole_rounds(self, shares: dict[str, int], room: int) -> int:
        """At the start of a round, give every tenant of it as many whole rounds as fit in
        `room` and as all of them still have; return the room left."""
        while self._round and room >= len(self._round):
            rounds = min(room // len(self._round), min(self._left[t] for t in self._round))
            for tenant in self._round:
                self._give(shares, tenant, rounds)
            room -= rounds * len(self._round)
            self._next_round()
        return room

    def _give(self, shares: dict[str, int], tenant: str, count: int) -> None:
        shares[tenant] = shares.get(tenant, 0) + count
        self._left[tenant] -= count

    def _next_round(self) -> None:
        self._round = [tenant for tenant in self._round if self._left[tenant] > 0]
        self._cursor = 0
