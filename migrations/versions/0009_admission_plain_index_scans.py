"""runs: admission reads the runs in progress by plain index scans, not bitmap scans

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Every admission round counts the runs in progress (`admitted`, `running`) through
ix_runs_in_progress or ix_runs_unfinished. Each run passes through those statuses in a few
hundred milliseconds, and every change of status leaves a dead index entry behind until
VACUUM, which comes a minute or more later. A bitmap scan visits the heap page of every
entry, dead or not, and never marks one dead: with 10,000 no-op runs going through, it read
1,195 entries and 231 heap pages to count 7 runs, 0.5 ms, two or three times a round. A
plain index scan marks an entry dead in the index once its row is dead to every
transaction, so the next scan skips it: 0.03-0.08 ms for the same counts.

`enable_bitmapscan = off` for the two functions that count (the finish's also looks for a
run admitted long ago, through ix_runs_unfinished). Every read of `runs` in them already
has an index that a plain scan can use, and enable_seqscan is off for the round (0008).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    "scheduler_admission_round(bigint, bigint, bigint, bigint, bigint)",
    "scheduler_finish_and_admit("
    "uuid, integer, jsonb, bigint, bigint, bigint, bigint, varchar, double precision)",
)


def upgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SET enable_bitmapscan = off")


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} RESET enable_bitmapscan")
