"""admission: runs wait in PostgreSQL, `admitted` status, overlap policy buffer_one

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-30

Adds the `admitted` run status (a slot is held, the run is handed to the broker, no
worker has started it yet) with `admitted_at` (PostgreSQL's clock: the slot's lease), the
overlap policy `buffer_one`, and the indexes admission reads. Existing rows need no
backfill: pending runs stay pending and are admitted by the first tick after the upgrade
(their old broker messages find them not `admitted` and are dropped as duplicates).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "'pending', 'running', 'succeeded', 'failed', 'cancelled', 'skipped'"
NEW_STATUSES = "'pending', 'admitted', 'running', 'succeeded', 'failed', 'cancelled', 'skipped'"


def upgrade() -> None:
    op.add_column("runs", sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint(op.f("ck_runs_status"), "runs", type_="check")
    op.create_check_constraint(op.f("ck_runs_status"), "runs", f"status IN ({NEW_STATUSES})")
    op.drop_constraint(op.f("ck_triggers_overlap_policy"), "triggers", type_="check")
    op.create_check_constraint(
        op.f("ck_triggers_overlap_policy"),
        "triggers",
        "overlap_policy IN ('allow', 'skip', 'buffer_one')",
    )
    # The waiting room, per tenant in fire order (admission's LATERAL and skip scan).
    op.create_index(
        "ix_runs_pending_tenant",
        "runs",
        ["tenant_id", "scheduled_for", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    # Slots in use, per tenant.
    op.create_index(
        "ix_runs_in_progress",
        "runs",
        ["tenant_id"],
        postgresql_where=sa.text("status IN ('admitted', 'running')"),
    )
    op.create_index(
        "ix_triggers_one_at_a_time",
        "triggers",
        ["id"],
        postgresql_where=sa.text("overlap_policy IN ('skip', 'buffer_one')"),
    )
    # Old ix_runs_unfinished covered pending and running: widen it to admitted.
    op.drop_index("ix_runs_unfinished", table_name="runs")
    op.create_index(
        "ix_runs_unfinished",
        "runs",
        ["status", "enqueued_at"],
        postgresql_where=sa.text("status IN ('pending', 'admitted', 'running')"),
    )


def downgrade() -> None:
    # An admitted run has not started: it goes back to waiting; buffer_one becomes skip.
    op.execute("UPDATE runs SET status = 'pending' WHERE status = 'admitted'")
    op.execute("UPDATE triggers SET overlap_policy = 'skip' WHERE overlap_policy = 'buffer_one'")
    op.drop_index("ix_runs_unfinished", table_name="runs")
    op.create_index(
        "ix_runs_unfinished",
        "runs",
        ["status", "enqueued_at"],
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.drop_index("ix_triggers_one_at_a_time", table_name="triggers")
    op.drop_index("ix_runs_in_progress", table_name="runs")
    op.drop_index("ix_runs_pending_tenant", table_name="runs")
    op.drop_constraint(op.f("ck_triggers_overlap_policy"), "triggers", type_="check")
    op.create_check_constraint(
        op.f("ck_triggers_overlap_policy"), "triggers", "overlap_policy IN ('allow', 'skip')"
    )
    op.drop_constraint(op.f("ck_runs_status"), "runs", type_="check")
    op.create_check_constraint(op.f("ck_runs_status"), "runs", f"status IN ({OLD_STATUSES})")
    op.drop_column("runs", "admitted_at")
