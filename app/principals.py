"""Principals and roles inside a tenant (docs/design.md section 18): whom a key belongs to,
what its role lets it do, and the one rule on `run_as`.

A principal is an opaque id the tenant chooses (its own user id, an e-mail address): 1-200
printable characters, no control or format characters (they would forge lines in a log or
hide text in the console), no leading or trailing space (two principals that look the same
must be the same). Principals are names within a tenant, not a registry: an admin may make
a trigger run as any well-formed principal, whether or not it holds a key, as the tenant's
own user ids need no key to be someone.

The rule on triggers, the same for the API, the console and the CLI:

- an operator key (every tenant) and a tenant `admin` key may create and change any trigger
  of the tenant and set its `run_as` to any principal;
- a `member` key may create and change only triggers that run as its own principal: a
  `run_as` naming anyone else, or a change (update, delete, pause, run now, backfill, cancel
  a run) to a trigger that runs as someone else, is PermissionDenied naming `run_as`, and
  nothing is written. Members read every trigger of their tenant.

Webhook signing secrets are for admins only (:func:`check_manages_secrets`): a signed body
is how a receiver trusts a delivery's `run_as`, so a key that could read a secret could
claim to be anyone.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from app import errors

ROLES = ("member", "admin")  # a key's role in its tenant
MEMBER, ADMIN = ROLES
PRINCIPAL_LENGTH = 200
# The principal of every key and trigger made before principals existed (migration 0014).
LEGACY_PRINCIPAL = "legacy"
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@dataclass(frozen=True)
class Actor:
    """Who writes: a principal, and whether it may act for any principal of the tenant (a
    tenant admin, or an operator)."""

    principal: str
    may_act_for_anyone: bool


def problem(value: object) -> str | None:
    """What is wrong with `value` as a principal, or None when it is a valid one."""
    if not isinstance(value, str):
        return "must be a string"
    if not value:
        return "must not be empty"
    if len(value) > PRINCIPAL_LENGTH:
        return f"must be at most {PRINCIPAL_LENGTH} characters"
    if any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in value):
        return "must not contain control characters"
    if value != value.strip():
        return "must not begin or end with a space"
    return None


def validate(value: str, *, field: str = "principal") -> str:
    """`value` if it is a valid principal; raise InvalidTrigger naming `field` otherwise."""
    message = problem(value)
    if message is not None:
        raise errors.InvalidTrigger({field: message})
    return value


def check_run_as(actor: Actor, run_as: str) -> None:
    """Raise PermissionDenied naming `run_as` unless `actor` may write a trigger that runs
    as `run_as` (see the module docstring)."""
    if actor.may_act_for_anyone or run_as == actor.principal:
        return
    raise errors.PermissionDenied(
        {
            "run_as": "a member key may only create or change triggers that run as its own "
            "principal; ask a tenant admin"
        }
    )


def check_manages_secrets(actor: Actor) -> None:
    """Raise PermissionDenied naming `role` unless `actor` may read and change the tenant's
    webhook signing secrets (a tenant admin or an operator). A member may not: holding a
    secret, it could sign a delivery that says it runs as any principal."""
    if not actor.may_act_for_anyone:
        raise errors.PermissionDenied(
            {"role": "only a tenant admin key may see or change webhook signing secrets"}
        )
