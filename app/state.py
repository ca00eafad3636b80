"""Scheduler state (the single `scheduler_state` row): generation fencing and tick records.

DESIGN section 8: the restart hook bumps `generation` and records the release that now owns
dispatching; a tick is accepted only when its release matches `deployment_id` (or none is
recorded yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from app import errors

Executor = Connection | Session


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


_COLUMNS = "generation, deployment_id, restarted_at, last_tick_at, last_tick_stats"


def get_state(session: Executor) -> State:
    """The current scheduler state (the migration guarantees the row exists)."""
    row = session.execute(text(f"SELECT {_COLUMNS} FROM scheduler_state WHERE id = 1")).one()
    return State(*row)


def check_fence(session: Executor, release_id: str) -> Fence:
    """Whether a tick sent by `release_id` may dispatch, and the generation to stamp.

    Reads with FOR SHARE so a concurrent restart either commits before this check (and the
    tick is refused) or waits until the tick's transaction ends.
    """
    generation, deployment_id = session.execute(
        text("SELECT generation, deployment_id FROM scheduler_state WHERE id = 1 FOR SHARE")
    ).one()
    accepted = deployment_id is None or deployment_id == release_id
    return Fence(accepted=accepted, generation=generation, deployment_id=deployment_id)


class ReleaseMismatch(errors.Conflict):
    """The restart names another release than the one of the process serving it."""

    def __init__(self, *, serving: str, requested: str) -> None:
        super().__init__(
            f"this process runs release {serving!r} but the restart names release "
            f"{requested!r}; nothing changed (retry so the call reaches the new release)"
        )
        self.serving = serving
        self.requested = requested


def restart(
    session: Executor, *, release_id: str, now: datetime, requested_release: str | None = None
) -> tuple[int, int]:
    """Bump the generation and hand dispatching to `release_id` (the caller's own release).

    Returns (previous_generation, new_generation). Calling it twice is safe: each call bumps
    once, and the deployment stays the same release. Raises ReleaseMismatch, changing
    nothing, when `requested_release` (the release the deployer just shipped; the hook and
    the CLI always pass it) is not `release_id`: during a deploy overlap the call may reach
    an old process, which must never hand dispatching back to its older code.
    """
    if requested_release is not None and requested_release != release_id:
        raise ReleaseMismatch(serving=release_id, requested=requested_release)
    new = session.execute(
        text(
            "UPDATE scheduler_state SET generation = generation + 1, deployment_id = :release, "
            "restarted_at = :now WHERE id = 1 RETURNING generation"
        ),
        {"release": release_id, "now": now},
    ).scalar_one()
    return new - 1, new


def record_tick(
    session: Executor, *, release_id: str, now: datetime, stats: dict[str, Any]
) -> bool:
    """Stamp the end of a tick with its statistics, if `release_id` still owns dispatching.

    Returns False (and records nothing) when a restart handed dispatching to another release
    since the tick's last batch. One conditional UPDATE: a fence check (FOR SHARE) followed
    by an UPDATE would deadlock two dispatchers finishing at once.
    """
    recorded = session.execute(
        text(
            "UPDATE scheduler_state SET last_tick_at = :now, "
            "last_tick_stats = CAST(:stats AS jsonb) || jsonb_build_object('superseded_total', "
            "COALESCE((last_tick_stats->>'superseded_total')::bigint, 0)) "
            "WHERE id = 1 AND (deployment_id IS NULL OR deployment_id = :release) RETURNING id"
        ),
        {"now": now, "stats": _json(stats), "release": release_id},
    ).first()
    return recorded is not None


def count_superseded_tick(session: Executor) -> None:
    """Count a refused tick in the stats (a metric), without touching last_tick_at."""
    session.execute(
        text(
            "UPDATE scheduler_state SET last_tick_stats = jsonb_set("
            "COALESCE(last_tick_stats, '{}'::jsonb), '{superseded_total}', "
            "to_jsonb(COALESCE((last_tick_stats->>'superseded_total')::bigint, 0) + 1)) "
            "WHERE id = 1"
        )
    )


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
