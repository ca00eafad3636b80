"""The recovery sweep (docs/design.md sections 5 and 12), run at the start of every accepted tick.

Two kinds of run hold a slot without progress, and would hold it forever without the sweep:

- `running` runs whose worker died: no heartbeat for `heartbeat_timeout_seconds`. They go
  back to `pending` for another attempt, or to `failed` when their attempts are used up
  (`cancelled` when their trigger was deleted).
- `admitted` runs that no worker started within `slot_lease_seconds`: the publish after
  admission was lost (the process died after its commit, the broker was down or lost the
  message). They go back to `pending`.

Either way the run waits in PostgreSQL again and admission (the tick's hand-off, right
after the sweep) hands it to the broker when a slot is free: the sweep itself publishes
nothing, and there is no backlog in the broker to hold back for. A second delivery of a run
is harmless: the runner claims only an `admitted` run.

Every cut-off is on PostgreSQL's clock (`clock_timestamp()`), the clock that stamped the
heartbeats and admissions, so a host whose clock is off cannot make a live run look dead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from app.queries import run_queue
from app.run_status import RunStatus

logger = logging.getLogger(__name__)

MAX_ROUNDS = 20  # bounds one sweep; what is left waits for the next tick


@dataclass(frozen=True)
class RecoveryOptions:
    heartbeat_timeout_seconds: int = 60
    admitted_lease_seconds: int = 60
    batch_size: int = 500


@dataclass
class SweepResult:
    requeued: int = 0  # back to pending: a lost worker's run with attempts left, a lost publish
    failed: int = 0  # a lost worker's run that ended (attempts used up, trigger deleted)


def sweep(engine: Engine, *, options: RecoveryOptions) -> SweepResult:
    """Give back the slots of dead workers and lost publishes; return what it did."""
    result = SweepResult()
    for _ in range(MAX_ROUNDS):
        with engine.begin() as conn:
            stale = run_queue.recover_stale_running(
                conn, timeout_seconds=options.heartbeat_timeout_seconds, batch=options.batch_size
            )
            returned = run_queue.return_stale_admitted(
                conn, lease_seconds=options.admitted_lease_seconds, batch=options.batch_size
            )
        for run_id, status, trigger_id, tenant_id, attempt in stale:
            logger.warning(
                "worker lost; run recovered",
                extra={
                    "event": "run_recovered",
                    "run_id": str(run_id),
                    "status": status,
                    "trigger_id": str(trigger_id),
                    "tenant_id": tenant_id,
                    "attempt": attempt,
                },
            )
        requeued = sum(1 for row in stale if row.status == RunStatus.PENDING)
        result.failed += len(stale) - requeued
        result.requeued += requeued + len(returned)
        if len(stale) < options.batch_size and len(returned) < options.batch_size:
            break
    if result.requeued or result.failed:
        logger.info(
            "recovery sweep",
            extra={"event": "recovery_sweep", "requeued": result.requeued, "failed": result.failed},
        )
    return result
