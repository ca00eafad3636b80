"""The waiting-runs cap: a tenant cannot pile up pending runs without bound.

docs/design.md section 17. `MAX_WAITING_RUNS_PER_TENANT` (default 10,000) bounds the runs a
tenant has waiting (`pending`: for a slot, or for a retry's backoff); its runs in progress
(at most MAX_RUNNING_PER_TENANT) count with them, as a retry or a recovery puts them back
in the waiting room. Every path that creates pending runs inserts them, then accounts for
them here in the same transaction:
- run now and backfill (the API, the console, the CLI): past the cap the transaction is
  refused, WaitingRunsLimitReached (a 409 naming the limit), and nothing is created; a
  backfill is all or nothing, and fires that already had a run add nothing;
- a dispatch batch: the latest fires past the cap become `skipped` runs whose error names
  the cap (never dropped silently).

How it stays exact and cheap (app/queries/waiting_runs.py): a tenant's row in
`waiting_counts` is a bound on its unfinished runs that every creator raises by what it
created, under the row's lock, held until it commits; so creators of one tenant take turns
and each sees what the others committed. Counting a tenant's unfinished runs costs as many
index entries as it has (14 ms for 10,000), so it is done only when the bound passes the
cap: the count (the creator's own new runs included) replaces the bound, and decides. A
tenant found at the cap less than RECOUNT_SECONDS ago is not counted again: the bound
stands, which may refuse for that long what a drain has just made room for, never the
other way. The lock is taken after the creator's insert, so a creator never holds it while
it waits for another's uncommitted run (a backfill and a tick writing the same fire's key).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from app import errors
from app.queries import Executor, waiting_runs

SETTING = "MAX_WAITING_RUNS_PER_TENANT"
# A tenant counted at or past the cap this recently is not counted again: a tick of a
# tenant's 100,000 triggers against a cap of 10,000 would otherwise count 10,000 runs for
# each of its 180 batches past the cap.
RECOUNT_SECONDS = 1.0


def skip_reason(limit: int) -> str:
    """The error recorded on a scheduled fire skipped at the cap."""
    return f"skipped: the tenant had {limit} runs waiting, the most it may have ({SETTING})"


def over_cap(executor: Executor, created: Iterable[tuple[str, int]], *, limit: int) -> dict:
    """Account for the pending runs this transaction created, (tenant, how many) each; return
    {tenant: how many of them are past the cap} for the tenants past it (empty when all fit).
    The caller refuses the transaction or skips that many (see the module docstring)."""
    added: dict[str, int] = defaultdict(int)
    for tenant, count in created:
        added[tenant] += count
    over = {}
    for tenant, bound, fresh in waiting_runs.add(
        executor, {t: n for t, n in added.items() if n}, fresh_seconds=RECOUNT_SECONDS
    ):
        if bound > limit and not fresh:
            bound = waiting_runs.recount(executor, tenant, limit=limit + added[tenant])
        if bound > limit:
            over[tenant] = min(bound - limit, added[tenant])
    return over


def hold(executor: Executor, tenant_id: str, *, created: int, limit: int) -> None:
    """Account for `created` new pending runs of the tenant; raise WaitingRunsLimitReached
    (the caller's transaction then rolls back: nothing is created) when they do not fit."""
    if created and over_cap(executor, [(tenant_id, created)], limit=limit):
        raise errors.WaitingRunsLimitReached(
            f"this would take the tenant past {limit} waiting runs, the most it may have "
            f"({SETTING}); wait for its runs to start, or cancel some"
        )


def skip_over_cap(
    executor: Executor,
    created: Mapping[str, int],
    keys: Mapping[str, Sequence[str]],
    *,
    limit: int,
    now: datetime,
) -> dict[str, int]:
    """Account for a dispatch batch's new pending runs, {tenant: how many}, and make the
    latest of each tenant's past the cap skipped with the cap as their error (`keys`: the
    idempotency keys of each tenant's pending fires in the batch); return {tenant: how
    many were} for the tenants past the cap."""
    over = over_cap(executor, created.items(), limit=limit)
    for tenant, count in over.items():
        waiting_runs.skip_latest(
            executor, keys[tenant], count=count, now=now, reason=skip_reason(limit)
        )
    waiting_runs.lower(executor, over)
    return over
