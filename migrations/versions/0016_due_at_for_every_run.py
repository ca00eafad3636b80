"""runs.due_at for every run: when it was due is written when it is made

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

`due_at` was the fire plus the trigger's jitter, written for scheduled and backfill runs
only, and every reader of "when was this run due" (the lag metrics, the console) worked it
out again: a backfill was due when it was made (`created_at`), a manual run at its
`scheduled_for`. Now each run says it when it is created: a scheduled run's fire plus
jitter, as before; a manual or a backfill run, the instant it was asked for. The readers use
`due_at` alone.

- Existing runs get the value the old rule gave them, in one UPDATE of the manual and
  backfill runs (a scheduled run keeps its own).
- The column's default becomes `now()`, for a run an older release creates during the
  deploy's overlap without the column (a manual run: it is due when it is made, which the
  default says). It stays nullable: NOT NULL would hold `runs` under an exclusive lock
  while PostgreSQL scans it.

The downgrade drops the default, sets manual runs' `due_at` back to NULL and backfill runs'
to their fire (`scheduled_for`): a jittered backfill loses its jitter, which nothing but
`due_at` stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE runs SET due_at = CASE WHEN kind = 'backfill' THEN created_at"
        " ELSE COALESCE(due_at, scheduled_for) END"
        " WHERE kind = 'backfill' OR due_at IS NULL"
    )
    op.alter_column("runs", "due_at", server_default=sa.text("now()"))


def downgrade() -> None:
    op.alter_column("runs", "due_at", server_default=None)
    op.execute("UPDATE runs SET due_at = NULL WHERE kind = 'manual'")
    op.execute("UPDATE runs SET due_at = scheduled_for WHERE kind = 'backfill'")
