"""Scheduler state (the single `scheduler_state` row): generation fencing and tick records.

docs/design.md section 8: the restart hook bumps `generation` and records the release that now owns
dispatching; a tick is accepted only when its release matches `deployment_id` (or none is
recorded yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app import errors, queries
from app.queries import scheduler_state


@dataclass(frozen=True)
class State:
    generation: int
    deployment_id: str | None
    restarted_at: datetime | None
    last_tick_at: datetime | None
    last_tick_stats: dict[str, Any] | None


@dataclass(frozen=True)
class Fence:
    """The outcome of checking a tick's release against the recorded deployment."""

    accepted: bool
    generation: int
    deployment_id: str | None


def get_state(session: queries.Executor) -> State:
    """The current scheduler state (the migration guarantees the row exists)."""
    return State(*scheduler_state.select_state(session))


def check_fence(session: queries.Executor, release_id: str) -> Fence:
    """Whether a tick sent by `release_id` may dispatch, and the generation to stamp.

    Reads with FOR SHARE so a concurrent restart either commits before this check (and the
    tick is refused) or waits until the tick's transaction ends.
    """
    generation, deployment_id = scheduler_state.select_fence_for_share(session)
    accepted = deployment_id is None or deployment_id == release_id
    return Fence(accepted=accepted, generation=generation, deployment_id=deployment_id)


def restart(
    session: queries.Executor,
    *,
    release_id: str,
    now: datetime,
    requested_release: str | None = None,
) -> tuple[int, int]:
    """Bump the generation and hand dispatching to `release_id` (the caller's own release).

    Returns (previous_generation, new_generation). Calling it twice is safe: each call bumps
    once, and the deployment stays the same release. Raises errors.ReleaseMismatch, changing
    nothing, when `requested_release` (the release the deployer just shipped; the hook and
    the CLI always pass it) is not `release_id`: during a deploy overlap the call may reach
    an old process, which must never hand dispatching back to its older code.
    """
    if requested_release is not None and requested_release != release_id:
        raise errors.ReleaseMismatch(serving=release_id, requested=requested_release)
    new = scheduler_state.bump_generation(session, release_id=release_id, now=now)
    return new - 1, new


def record_tick(
    session: queries.Executor, *, release_id: str, now: datetime, stats: dict[str, Any]
) -> bool:
    """Stamp the end of a tick with its statistics, if `release_id` still owns dispatching.

    Returns False (and records nothing) when a restart handed dispatching to another release
    since the tick's last batch. One conditional UPDATE: a fence check (FOR SHARE) followed
    by an UPDATE would deadlock two dispatchers finishing at once.
    """
    return scheduler_state.record_tick(session, release_id=release_id, now=now, stats=stats)


def count_superseded_tick(session: queries.Executor) -> None:
    """Count a refused tick in the stats (a metric), without touching last_tick_at."""
    scheduler_state.count_superseded_tick(session)
