"""schedules beyond cron: interval, jitter, pause note, backfill runs (docs/design.md section 11)

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-30

Backfill (docs/design.md section 3): the dispatcher now plans from `next_fire_at` (the nominal next
fire) and claims by `next_run_at` (when it is due). Existing triggers have no jitter, so both
are the same instant: `next_fire_at` is copied from `next_run_at` in this migration, and every
existing trigger keeps firing across the upgrade
(tests/migration/test_interval_schedules_upgrade.py).
Existing scheduled runs were due at their `scheduled_for`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("triggers", sa.Column("next_fire_at", TZ, nullable=True))
    op.add_column("triggers", sa.Column("interval_seconds", sa.Integer(), nullable=True))
    op.add_column("triggers", sa.Column("anchor_at", TZ, nullable=True))
    op.add_column(
        "triggers",
        sa.Column("jitter_seconds", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("triggers", sa.Column("paused_note", sa.String(length=500), nullable=True))
    op.add_column("triggers", sa.Column("paused_at", TZ, nullable=True))
    op.add_column("triggers", sa.Column("paused_by", sa.String(length=100), nullable=True))
    op.execute("UPDATE triggers SET next_fire_at = next_run_at WHERE next_run_at IS NOT NULL")
    op.drop_constraint(op.f("ck_triggers_cron_xor_run_at"), "triggers", type_="check")
    op.create_check_constraint(
        op.f("ck_triggers_one_schedule"),
        "triggers",
        "num_nonnulls(cron, run_at, interval_seconds) = 1",
    )
    op.create_check_constraint(
        op.f("ck_triggers_interval_seconds"),
        "triggers",
        "interval_seconds BETWEEN 60 AND 31622400",
    )
    op.create_check_constraint(
        op.f("ck_triggers_jitter"), "triggers", "jitter_seconds BETWEEN 0 AND 3600"
    )

    op.add_column("runs", sa.Column("due_at", TZ, nullable=True))
    op.execute("UPDATE runs SET due_at = scheduled_for WHERE kind = 'scheduled'")
    op.drop_constraint(op.f("ck_runs_kind"), "runs", type_="check")
    op.create_check_constraint(
        op.f("ck_runs_kind"), "runs", "kind IN ('scheduled', 'manual', 'backfill')"
    )


def downgrade() -> None:
    conn = op.get_bind()
    intervals = conn.execute(
        sa.text("SELECT count(*) FROM triggers WHERE interval_seconds IS NOT NULL")
    ).scalar_one()
    if intervals:
        # The older schema cannot hold them; deleting a user's triggers silently is worse.
        raise RuntimeError(
            f"{intervals} interval trigger(s) exist: delete or convert them to cron first"
        )
    # The older code knows no backfill runs: they stay in the history as manual runs.
    op.drop_constraint(op.f("ck_runs_kind"), "runs", type_="check")
    op.execute("UPDATE runs SET kind = 'manual' WHERE kind = 'backfill'")
    op.create_check_constraint(op.f("ck_runs_kind"), "runs", "kind IN ('scheduled', 'manual')")
    op.drop_column("runs", "due_at")

    # The older dispatcher plans from next_run_at: give it the nominal fire back, or a
    # jittered trigger's next fire would be taken for a later instant and skipped.
    op.execute(
        "UPDATE triggers SET next_run_at = next_fire_at "
        "WHERE next_fire_at IS NOT NULL AND next_run_at IS DISTINCT FROM next_fire_at"
    )
    op.drop_constraint(op.f("ck_triggers_jitter"), "triggers", type_="check")
    op.drop_constraint(op.f("ck_triggers_interval_seconds"), "triggers", type_="check")
    op.drop_constraint(op.f("ck_triggers_one_schedule"), "triggers", type_="check")
    op.create_check_constraint(
        op.f("ck_triggers_cron_xor_run_at"), "triggers", "(cron IS NULL) <> (run_at IS NULL)"
    )
    for column in (
        "paused_by", "paused_at", "paused_note", "jitter_seconds", "anchor_at",
        "interval_seconds", "next_fire_at",
    ):  # fmt: skip
        op.drop_column("triggers", column)
