"""Idempotent requests: the first response to a (tenant, Idempotency-Key) is stored and replayed.

Exactly-once is the database's job, not a read-then-write: :func:`claim` inserts the record
with `ON CONFLICT DO NOTHING RETURNING` in the same transaction as the work it guards, and
:func:`complete` stores the response before that transaction commits. A second request with
the same key blocks on the unique index until the first commits, then finds the record and
replays it; if the first rolled back, the second's insert goes through and it does the work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app import errors
from app.queries import idempotency_records


@dataclass(frozen=True)
class Claim:
    """The outcome of :func:`claim`: do the work (`record_id`) or replay (`status`, `body`)."""

    record_id: int | None = None
    status: int | None = None
    body: Any = None

    @property
    def is_replay(self) -> bool:
        return self.record_id is None


def request_hash(method: str, path: str, body: Any) -> str:
    """SHA-256 of the method, path and canonical JSON body (key order does not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


def claim(session: Session, *, tenant_id: str, key: str, request_hash: str) -> Claim:
    """Reserve `key` for this request, or return the stored response of the first one.

    1. Insert the record; the unique (tenant_id, key) index makes a concurrent insert of the
       same key wait for this transaction and then insert nothing.
    2. Nothing inserted: read the committed record. A different request hash raises
       errors.KeyReused (409); a stored response is returned for replay.

    The caller must call :func:`complete` in the same transaction when it did the work.
    """
    record_id = idempotency_records.insert(session, tenant_id, key, request_hash)
    if record_id is not None:
        return Claim(record_id=record_id)
    row = idempotency_records.find(session, tenant_id, key)
    if row is None:
        # The record was pruned between our insert and read: claim it again.
        return claim(session, tenant_id=tenant_id, key=key, request_hash=request_hash)
    stored_hash, status, body = row
    if stored_hash != request_hash:
        raise errors.KeyReused()
    if status is None:
        # Only reachable if a writer committed without completing: never replay a blank.
        raise errors.Conflict("a request with this Idempotency-Key is still in progress")
    return Claim(status=status, body=body)


def stored_response(
    session: Session, *, tenant_id: str, key: str, request_hash: str
) -> Claim | None:
    """The replay of an already completed request with this key, or None (read only).

    Lets a caller answer a retry before validating the body again: a body that was valid
    when first sent (a one-time `run_at` 30 s ahead) may no longer be, and the retry must
    still get the first response. Raises errors.KeyReused for the same key with another request.
    """
    row = idempotency_records.find(session, tenant_id, key)
    if row is None or row[1] is None:
        return None
    stored_hash, status, body = row
    if stored_hash != request_hash:
        raise errors.KeyReused()
    return Claim(status=status, body=body)


def complete(session: Session, claim: Claim, *, status: int, body: Any) -> None:
    """Store the response of a claimed request (same transaction as the claim)."""
    if claim.record_id is None:
        raise ValueError("complete() needs a claim that did the work, not a replay")
    idempotency_records.store_response(
        session, claim.record_id, status=status, body=json.dumps(body)
    )
