"""API keys: generated once, stored only as a SHA-256 hash with a short display prefix.

A key is `tsk_` followed by 32 random bytes (urlsafe base64, 43 characters). The database
holds its SHA-256 hex digest and its first characters (`prefix`) so an operator can tell keys
apart in `keys list` and revoke one without ever seeing the secret again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app import errors, principals
from app.models import ApiKey
from app.queries import api_keys

KEY_SCHEME = "tsk_"
KEY_BYTES = 32
PREFIX_LENGTH = 12  # "tsk_" and 8 random characters: 48 bits, plenty to tell keys apart
ADMIN_ACTOR = "admin"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a tenant key, or an admin key that sees every tenant.

    `principal` is whom the key belongs to in its tenant and `role` its role there
    (`member` or `admin`, docs/design.md section 18); `is_admin` is the operator flag.
    """

    key_id: uuid.UUID
    tenant_id: str
    is_admin: bool
    prefix: str
    principal: str
    role: str

    @property
    def label(self) -> str:
        """Who did it, as a tenant may see it (`paused_by`): its own key's prefix, or
        `admin` for an admin key, whose prefix is no business of a tenant's."""
        return ADMIN_ACTOR if self.is_admin else self.prefix

    @property
    def scope(self) -> str | None:
        """The tenant to filter by, or None for an admin (every tenant)."""
        return None if self.is_admin else self.tenant_id

    @property
    def actor(self) -> principals.Actor:
        """The key as a writer of triggers: its principal, and whether it may act for any
        principal (a tenant admin or an operator key)."""
        return principals.Actor(
            self.principal, may_act_for_anyone=self.is_admin or self.role == principals.ADMIN
        )


@dataclass(frozen=True)
class NewKey:
    """A freshly created key; `key` is the only copy of the secret and is shown once."""

    id: uuid.UUID
    key: str
    prefix: str
    tenant_id: str
    is_admin: bool
    principal: str
    role: str


def generate() -> str:
    """A new random key (32 bytes of entropy from `secrets`)."""
    return KEY_SCHEME + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored in place of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def validate_tenant(tenant_id: str) -> str:
    """The tenant id if it is 1-100 characters of letters, digits, `.`, `_`, `-`."""
    if not TENANT_PATTERN.match(tenant_id):
        raise errors.ConfigError(
            "tenant must be 1-100 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return tenant_id


def validate_principal(principal: str) -> str:
    """The principal if it is valid (app.principals); ConfigError saying why otherwise."""
    message = principals.problem(principal)
    if message is not None:
        raise errors.ConfigError(f"principal {message}")
    return principal


def validate_role(role: str) -> str:
    """The role if it is `member` or `admin`; ConfigError otherwise."""
    if role not in principals.ROLES:
        raise errors.ConfigError(f"role must be one of {', '.join(principals.ROLES)}")
    return role


def create(
    session: Session,
    *,
    tenant_id: str,
    principal: str,
    role: str = principals.MEMBER,
    name: str = "",
    is_admin: bool = False,
    now: datetime,
) -> NewKey:
    """Store a new key of `principal` in `tenant_id`, with `role` there, and return it (the
    plaintext is not kept anywhere). Raises ConfigError for a bad tenant, principal or role
    (its message names which)."""
    key = generate()
    row = ApiKey(
        id=uuid.uuid4(),
        tenant_id=validate_tenant(tenant_id),
        principal=validate_principal(principal),
        role=validate_role(role),
        name=name[:200],
        prefix=key[:PREFIX_LENGTH],
        key_hash=hash_key(key),
        is_admin=is_admin,
        created_at=now,
    )
    api_keys.add(session, row)
    return NewKey(row.id, key, row.prefix, row.tenant_id, row.is_admin, row.principal, row.role)


def _principal(row: ApiKey) -> Principal:
    return Principal(row.id, row.tenant_id, row.is_admin, row.prefix, row.principal, row.role)


def authenticate(session: Session, key: str) -> Principal | None:
    """The principal of an active key, or None when the key is unknown or revoked.

    The lookup is by the hash of a high-entropy secret, so its timing tells an attacker
    nothing about other keys.
    """
    if not key.startswith(KEY_SCHEME) or len(key) > 200:
        return None
    row = api_keys.find_active_by_hash(session, hash_key(key))
    return None if row is None else _principal(row)


def console_session(session: Session, key_id: uuid.UUID) -> tuple[Principal, int] | None:
    """The principal of the active key with this id and its console epoch (a console session
    is valid while its cookie holds that epoch), or None when the key is unknown or revoked.

    For the console's session, which holds the key's id (never the key) and re-checks it on
    every request, so revoking a key or signing out ends its console sessions at once.
    """
    row = api_keys.find_active_by_id(session, key_id)
    if row is None:
        return None
    return _principal(row), row.console_epoch


def end_console_sessions(session: Session, key_id: uuid.UUID) -> None:
    """End every console session of the key (sign-out): a copied cookie is refused too."""
    api_keys.bump_console_epoch(session, key_id)


def has_active(session: Session, tenant_id: str) -> bool:
    """Whether the tenant has a key that is not revoked."""
    return api_keys.has_active(session, tenant_id)


def list_keys(session: Session, *, tenant_id: str | None = None) -> list[ApiKey]:
    """Every key (revoked ones too), oldest first, optionally of one tenant."""
    return api_keys.list_all(session, tenant_id=tenant_id)


def revoke(session: Session, prefix_or_id: str, *, now: datetime) -> ApiKey:
    """Revoke the active key whose id or display prefix is `prefix_or_id`; return it.

    Raises NotFound when no active key matches and Conflict when a prefix matches several
    (revoke by id then).
    """
    matches = api_keys.find_active_by_prefix_or_id(session, prefix_or_id)
    if not matches:
        raise errors.NotFound(f"no active key with id or prefix {prefix_or_id!r}")
    if len(matches) > 1:
        raise errors.Conflict(f"prefix {prefix_or_id!r} matches {len(matches)} keys; use the id")
    api_keys.mark_revoked(session, matches[0].id, now=now)
    return matches[0]
