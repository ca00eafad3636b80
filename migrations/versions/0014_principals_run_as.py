"""principals and run-as: keys belong to a principal with a role, triggers run as one

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

docs/design.md section 18.

- `api_keys.principal` (the opaque id of whom the key belongs to) and `api_keys.role`
  (`member` or `admin` in its tenant). EVERY KEY MADE BEFORE THIS MIGRATION BECOMES AN
  `admin` KEY OF ITS TENANT, with the principal `legacy`: it may still do everything it
  could (nothing breaks), including changing every trigger of its tenant. Operator keys
  (`is_admin`, every tenant) are unchanged. New keys say their principal and role
  (`flask --app web keys create --tenant T --principal P [--role admin]`); a key inserted
  without a role (an older release's CLI during the deploy's overlap) is a `member`: the
  least a key can be.
- `triggers.run_as`, `created_by`, `updated_by`: every existing trigger runs as, and was
  created and last changed by, `legacy` (the principal every existing key now has: they
  were all made with such keys), so legacy keys keep changing them and their runs carry
  `legacy`. The columns keep `legacy` as their default, for an older release's web process
  that creates a trigger during the overlap: it acts for a legacy key.
- `runs.run_as`: the principal the run fired as, recorded when the run is created so a
  later change of the trigger does not rewrite history. Existing runs get `legacy` (their
  triggers ran as nobody else). It has no default: a run inserted by an older release's
  dispatcher during the overlap is null, and the runner takes the trigger's `run_as` for it
  at its first attempt (and records it).

Each column is added with a constant default, which PostgreSQL 11+ stores once in the
catalog instead of rewriting the table (no long lock on `runs`), then the default is
changed or dropped as above; existing rows keep the value they were given.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY = "legacy"  # app.principals.LEGACY_PRINCIPAL, frozen here
PRINCIPAL = sa.String(length=200)


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("principal", PRINCIPAL, server_default=LEGACY, nullable=False),
    )
    op.add_column(
        "api_keys", sa.Column("role", sa.String(length=10), server_default="admin", nullable=False)
    )
    op.alter_column("api_keys", "role", server_default="member")
    op.create_check_constraint(op.f("ck_api_keys_role"), "api_keys", "role IN ('member', 'admin')")
    for column in ("run_as", "created_by", "updated_by"):
        op.add_column(
            "triggers", sa.Column(column, PRINCIPAL, server_default=LEGACY, nullable=False)
        )
    op.add_column("runs", sa.Column("run_as", PRINCIPAL, server_default=LEGACY, nullable=True))
    op.alter_column("runs", "run_as", server_default=None)


def downgrade() -> None:
    op.drop_column("runs", "run_as")
    for column in ("updated_by", "created_by", "run_as"):
        op.drop_column("triggers", column)
    op.drop_constraint(op.f("ck_api_keys_role"), "api_keys", type_="check")
    op.drop_column("api_keys", "role")
    op.drop_column("api_keys", "principal")
