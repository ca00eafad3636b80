"""issue 30's low findings: console sign-out ends copied cookies; paused_by shows a role

`api_keys.console_epoch`: a console session is valid while its cookie holds its key's
epoch; signing out adds one, so a cookie copied before the sign-out is refused (it stayed
valid for up to 12 hours). Cookies made before this hold no epoch and count as 0.

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
    op.add_column(
        "api_keys", sa.Column("console_epoch", sa.Integer(), server_default="0", nullable=False)
    )
    op.execute(
        sa.text(
            "UPDATE triggers SET paused_by = 'admin' WHERE paused_by IN "
            "(SELECT prefix FROM api_keys WHERE is_admin)"
        )
    )


def downgrade() -> None:
    op.drop_column("api_keys", "console_epoch")
