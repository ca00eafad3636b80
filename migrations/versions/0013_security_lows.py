"""issue 30's low findings: paused_by shows a role for admin keys

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

`paused_by` held the pausing key's prefix, an admin key's too, and tenants read it: a
trigger paused by an admin key now records `admin` (app/keys.py, Principal.actor), and the
rows an admin key paused before this get `admin` in place of its prefix (downgrade leaves
them so: the prefix is not worth keeping where a tenant reads it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE triggers SET paused_by = 'admin' WHERE paused_by IN "
            "(SELECT prefix FROM api_keys WHERE is_admin)"
        )
    )


def downgrade() -> None:
    pass
