"""The rows the runner claims, typed at the seam: a run and its trigger, as the SQL
functions `scheduler_claim_v2` (app/queries/runs.py, claim) and `scheduler_finish_and_admit_v2`
return them (columns by the model's names; the trigger's prefixed `t_`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as the runner claims it (the claim functions' run columns)."""

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
    # The principal it fires as; None for a run an older release inserted without one
    # (app/attempts.py then records its trigger's). Not a column the functions return: the
    # statements that call them add it (RUN_AS_BESIDE).
    run_as: str | None

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


# The run's run_as beside a claim function's row (aliased `fn`), so an attempt needs no
# statement of its own to read it. A scalar subquery, one primary-key probe; not a join,
# which the functions' row estimate (1,000) could make a hash over a scan of `runs`.
RUN_AS_BESIDE = "(SELECT r.run_as FROM runs AS r WHERE r.id = fn.id) AS run_as"

_RUN_FIELDS = tuple(RunRow.__dataclass_fields__)
_TRIGGER_FIELDS = tuple(TriggerRow.__dataclass_fields__)
