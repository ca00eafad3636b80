"""issue 30's low findings: webhook secrets encrypted at rest; console sign-out ends copied
cookies; paused_by shows a role

`webhook_secrets.secret` (plaintext) becomes `secret_ciphertext`, a Fernet token under the
first key of SECRETS_ENCRYPTION_KEY (app/secret_box.py); existing rows are encrypted here,
so the migration needs the key whenever there are rows (it stops, naming the variable,
rather than leave a secret in plaintext). Downgrade decrypts them back with any of the keys.
The Fernet calls are written out here, not imported from app/secret_box.py, so this
migration keeps doing what it did if that module changes. During a deploy's overlap an
older release cannot read the new column: its webhook deliveries fail until it stops.

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

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, MultiFernet

from app import config

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fernet(rows: int, doing: str) -> MultiFernet | None:
    """The keys of SECRETS_ENCRYPTION_KEY, newest first; None when there is nothing to do."""
    if rows == 0:
        return None
    keys = config.get_settings().secrets_encryption_keys
    if not keys:
        raise RuntimeError(
            f"SECRETS_ENCRYPTION_KEY must be set to {doing} the {rows} webhook secrets "
            "(migration 0013)"
        )
    return MultiFernet([Fernet(key) for key in keys])


def _rewrite(source: str, target: str, change: Callable[[MultiFernet, str], str]) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text(f"SELECT id, {source} FROM webhook_secrets")).all()
    box = _fernet(len(rows), "encrypt" if target == "secret_ciphertext" else "decrypt")
    for row_id, value in rows:
        bind.execute(
            sa.text(f"UPDATE webhook_secrets SET {target} = :value WHERE id = :id"),
            {"id": row_id, "value": change(box, value)},
        )


def upgrade() -> None:
    op.add_column("webhook_secrets", sa.Column("secret_ciphertext", sa.Text(), nullable=True))
    _rewrite("secret", "secret_ciphertext",
             lambda box, value: box.encrypt(value.encode()).decode())  # fmt: skip
    op.alter_column("webhook_secrets", "secret_ciphertext", nullable=False)
    op.drop_column("webhook_secrets", "secret")
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
    op.add_column("webhook_secrets", sa.Column("secret", sa.String(length=100), nullable=True))
    _rewrite("secret_ciphertext", "secret",
             lambda box, value: box.decrypt(value.encode()).decode())  # fmt: skip
    op.alter_column("webhook_secrets", "secret", nullable=False)
    op.drop_column("webhook_secrets", "secret_ciphertext")
    op.drop_column("api_keys", "console_epoch")
