"""The rows the runner reads and claims, typed at the seam: a run and its trigger, as
app/queries/runs.py's `load`, `scheduler_claim_plain` and `scheduler_finish_and_admit`
return them (columns by the model's names; the trigger's prefixed `t_`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

RUN_COLUMNS = (
    "r.id, r.trigger_id, r.tenant_id, r.scheduled_for, r.kind, r.idempotency_key, r.status, "
    "r.attempt, r.not_before, r.cancel_requested_at, r.generation, r.created_at"
)
TRIGGER_COLUMNS = (
    "t.id AS t_id, t.enabled AS t_enabled, t.run_at IS NULL AS t_recurring, "
    "t.action AS t_action, t.payload AS t_payload, t.overlap_policy AS t_overlap_policy, "
    "t.max_attempts AS t_max_attempts, t.retry_backoff_seconds AS t_retry_backoff_seconds, "
    "t.timeout_seconds AS t_timeout_seconds"
)


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as the runner reads and claims it (RUN_COLUMNS, `scheduler_claim_plain`)."""

    id: uuid.UUID
    trigger_id: uuid.UUID
    tenant_id: str
    scheduled_for: datetime
    kind: str
    idempotency_key: str
    status: str
    attempt: int
    not_before: datetime | None
    cancel_requested_at: datetime | None
    generation: int
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> RunRow:
        """From a result row whose columns carry the model's names."""
        found = row._mapping
        return cls(*(found[name] for name in _RUN_FIELDS))


@dataclass(frozen=True, slots=True)
class TriggerRow:
    """The trigger the runner needs with a run: its columns prefixed `t_` in a row."""

    id: uuid.UUID
    enabled: bool
    recurring: bool  # cron or interval (a one-time trigger is disabled once dispatched)
    action: dict[str, Any]
    payload: dict[str, Any]
    overlap_policy: str
    max_attempts: int
    retry_backoff_seconds: int
    timeout_seconds: int

    @classmethod
    def of(cls, row: Any) -> TriggerRow | None:
        """From a result row's `t_` columns; None when they are NULL (trigger deleted)."""
        found = row._mapping
        if found["t_id"] is None:
            return None
        return cls(*(found[f"t_{name}"] for name in _TRIGGER_FIELDS))


_RUN_FIELDS = tuple(RunRow.__dataclass_fields__)
_TRIGGER_FIELDS = tuple(TriggerRow.__dataclass_fields__)
