"""webhook signing secrets per tenant

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_secrets",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.String(length=100), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_secrets")),
    )
    op.create_index(
        "ix_webhook_secrets_tenant_created",
        "webhook_secrets",
        ["tenant_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_webhook_secrets_current",
        "webhook_secrets",
        ["tenant_id"],
        unique=True,
        postgresql_where=sa.text("expires_at IS NULL AND revoked_at IS NULL"),
    )
    # Tenants that already have webhook triggers get their first secret now, so their
    # next delivery is signed the new way (the old global secret is gone).
    bind = op.get_bind()
    tenants = bind.execute(
        sa.text("SELECT DISTINCT tenant_id FROM triggers WHERE action->>'type' = 'webhook'")
    ).scalars()
    for tenant in list(tenants):
        bind.execute(
            sa.text(
                "INSERT INTO webhook_secrets (id, tenant_id, secret, created_at) "
                "VALUES (:id, :tenant, :secret, now())"
            ),
            {
                "id": uuid.uuid4(),
                "tenant": tenant,
                "secret": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
            },
        )


def downgrade() -> None:
    op.drop_index("uq_webhook_secrets_current", table_name="webhook_secrets")
    op.drop_index("ix_webhook_secrets_tenant_created", table_name="webhook_secrets")
    op.drop_table("webhook_secrets")
