"""Per-tenant webhook signing secrets (docs/design.md section 13): list, rotate, revoke.

A secret is `whsec_` + base64 of 32 random bytes, the Standard Webhooks format. It is
active while not revoked and not past `expires_at`; every active secret signs each delivery,
so a receiver that still holds the previous one keeps verifying through a rotation.

- The current secret has no `expires_at`; a unique partial index allows one per tenant.
- Rotating (`create`) gives the current one `expires_at = now + grace` and adds a new
  current one; at most MAX_ACTIVE stay active, the oldest extras expire at once.
- Revoking is immediate.
- A tenant's first webhook trigger makes its first secret (`ensure_first`), in the same
  transaction; so does a delivery finding none (triggers older than this table, or a tenant
  that revoked its last secret), so a webhook is never sent unsigned.

Rows hold a Fernet token of the secret (app/secret_box.py, SECRETS_ENCRYPTION_KEY); the
functions here return `Secret`s, decrypted.

Writes for one tenant are serialised by a transaction-level advisory lock: two concurrent
first triggers make one secret, two concurrent rotations keep one current secret.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import db, errors, secret_box
from app.models import WebhookSecret
from app.queries import webhook_secrets as webhook_secrets_q

PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_ACTIVE = 10


@dataclass(frozen=True)
class Secret:
    """A signing secret, decrypted: what signs deliveries and what the tenant is shown."""

    id: uuid.UUID
    tenant_id: str
    secret: str
    created_at: datetime
    expires_at: datetime | None


def generate() -> str:
    """A new secret: `whsec_` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def list_active(session: Session, tenant_id: str, *, now: datetime) -> list[Secret]:
    """The tenant's active secrets, newest first."""
    return [_shown(row) for row in webhook_secrets_q.list_active(session, tenant_id, now=now)]


def create(session: Session, tenant_id: str, *, now: datetime, grace: timedelta) -> Secret:
    """Rotate: add a new current secret; the previous current one expires after `grace`.

    Beyond MAX_ACTIVE active secrets, the oldest expire now (a leaked old key cannot be
    kept alive by rotating often).
    """
    webhook_secrets_q.lock_tenant(session, tenant_id)
    webhook_secrets_q.expire_current(session, tenant_id, at=now + grace)
    secret = _insert(session, tenant_id, now=now)
    extra = webhook_secrets_q.list_active(session, tenant_id, now=now)[MAX_ACTIVE:]
    if extra:
        webhook_secrets_q.expire(session, [s.id for s in extra], at=now)
    return secret


def revoke(session: Session, secret_id: uuid.UUID, *, scope: str | None, now: datetime) -> None:
    """Revoke an active secret now; NotFound when it is not an active secret of `scope`
    (None: an admin, any tenant)."""
    if not webhook_secrets_q.revoke(session, secret_id, scope=scope, now=now):
        raise errors.NotFound("webhook secret not found")


def ensure_first(session: Session, tenant_id: str, *, now: datetime) -> Secret | None:
    """Give the tenant a current secret if it has none; return the new one, or None when it
    already had one (or another transaction made it first: the lock makes us wait for it)."""
    webhook_secrets_q.lock_tenant(session, tenant_id)
    has_current = webhook_secrets_q.has_current(session, tenant_id)
    return None if has_current else _insert(session, tenant_id, now=now)


def signing_secrets(engine: Engine, tenant_id: str, *, now: datetime) -> list[str]:
    """The secrets a delivery for `tenant_id` is signed with, newest first (made first if
    the tenant has none, so a webhook never leaves unsigned)."""
    with db.session_scope(engine) as session:
        active = list_active(session, tenant_id, now=now)
        if not active:
            ensure_first(session, tenant_id, now=now)
            active = list_active(session, tenant_id, now=now)
        return [s.secret for s in active]


def _insert(session: Session, tenant_id: str, *, now: datetime) -> Secret:
    plaintext = generate()
    row = WebhookSecret(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        secret_ciphertext=secret_box.encrypt(plaintext),
        created_at=now,
    )
    webhook_secrets_q.add(session, row)
    return Secret(row.id, tenant_id, plaintext, now, None)


def _shown(row: WebhookSecret) -> Secret:
    plaintext = secret_box.decrypt(row.secret_ciphertext)
    return Secret(row.id, row.tenant_id, plaintext, row.created_at, row.expires_at)
