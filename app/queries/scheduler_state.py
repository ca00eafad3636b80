"""Every statement on the one `scheduler_state` row (id 1), one named function each."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text


def select_state(session: Any) -> tuple:
    """(generation, deployment_id, restarted_at, last_tick_at, last_tick_stats)."""
    return session.execute(
        text(
            "SELECT generation, deployment_id, restarted_at, last_tick_at, last_tick_stats "
            "FROM scheduler_state WHERE id = 1"
        )
    ).one()


def select_fence_for_share(session: Any) -> tuple[int, str | None]:
    """(generation, deployment_id), read FOR SHARE until the transaction ends."""
    return tuple(
        session.execute(
            text("SELECT generation, deployment_id FROM scheduler_state WHERE id = 1 FOR SHARE")
        ).one()
    )


def bump_generation(session: Any, *, release_id: str, now: datetime) -> int:
    """Generation + 1, dispatching handed to `release_id`; return the new generation."""
    return session.execute(
        text(
            "UPDATE scheduler_state SET generation = generation + 1, deployment_id = :release, "
            "restarted_at = :now WHERE id = 1 RETURNING generation"
        ),
        {"release": release_id, "now": now},
    ).scalar_one()


def record_tick(session: Any, *, release_id: str, now: datetime, stats: dict[str, Any]) -> bool:
    """Stamp `last_tick_at` and the tick's stats (keeping `superseded_total`) if `release_id`
    owns dispatching; False when it does not (nothing written)."""
    recorded = session.execute(
        text(
            "UPDATE scheduler_state SET last_tick_at = :now, "
            "last_tick_stats = CAST(:stats AS jsonb) || jsonb_build_object('superseded_total', "
            "COALESCE((last_tick_stats->>'superseded_total')::bigint, 0)) "
            "WHERE id = 1 AND (deployment_id IS NULL OR deployment_id = :release) RETURNING id"
        ),
        {"now": now, "stats": json.dumps(stats, default=str), "release": release_id},
    ).first()
    return recorded is not None


def count_superseded_tick(session: Any) -> None:
    """Add one to `superseded_total` in the tick stats, without touching `last_tick_at`."""
    session.execute(
        text(
            "UPDATE scheduler_state SET last_tick_stats = jsonb_set("
            "COALESCE(last_tick_stats, '{}'::jsonb), '{superseded_total}', "
            "to_jsonb(COALESCE((last_tick_stats->>'superseded_total')::bigint, 0) + 1)) "
            "WHERE id = 1"
        )
    )
