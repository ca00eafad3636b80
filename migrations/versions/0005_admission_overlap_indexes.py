"""admission: wake-up numbers; a trigger's waiting fires; runs between two attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Admission marks `skipped` the waiting fires of `skip` / `buffer_one` triggers that have a
run in progress. It used to look at every waiting run for that, on every hand-off (4 ms
with 2,000 waiting, growing with the backlog, under admission's lock); it now starts from
the few triggers with a run in progress or between two attempts, and needs these two
partial indexes to go from a trigger to its waiting fires, and to the runs waiting for a
retry, without reading the trigger's history.

The sequence `admission_wakeups` numbers would-be admitters: whoever finds admission's
lock taken leaves, and the holder admits again while the number has moved on
(app/admission.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("admission_wakeups")))
    op.create_index(
        "ix_runs_pending_trigger",
        "runs",
        ["trigger_id", "scheduled_for", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_runs_retrying",
        "runs",
        ["trigger_id"],
        postgresql_where=sa.text("status = 'pending' AND attempt > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_retrying", table_name="runs")
    op.drop_index("ix_runs_pending_trigger", table_name="runs")
    op.execute(sa.schema.DropSequence(sa.Sequence("admission_wakeups")))
