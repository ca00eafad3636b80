"""runs: the admission round's overlap test starts from the trigger; its plan is kept

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Three changes to `scheduler_admission_round` (0006); the rest of the function is 0006's,
read from that migration and changed here in three places, each checked to be found.

1. In the admitting statement, a waiting run is held back when its trigger runs one fire
   at a time (`skip`, `buffer_one`) and another run of the trigger is in progress or waits
   ahead of it. The two EXISTS over `runs` named the run's trigger as `r.trigger_id`, so they
   did not depend on the trigger row: the planner could test them first, as a gate on the
   lookup of the trigger, for every candidate run, however its trigger runs. With
   statistics that had not yet seen a burst of 20,000 waiting runs, it did, and scanned a
   tenant's waiting runs for each: 5 ms per candidate. They now name `t.id`, so they run
   only for a trigger that runs one fire at a time.
2. Its statements were planned at every call (`force_custom_plan`): planning was most of a
   round, 1.1-1.6 ms. They are now planned once per session (`force_generic_plan`), and
   again when the statistics of a table they read change: 0.5-0.8 ms a round, whether or
   not the statistics have seen the latest burst.
3. A plan kept for the session must avoid sequential scans of `runs`: made while the table
   was tiny, a sequential scan is the cheapest plan, and it stays in use as the table
   grows (bench.peers_e2e at 10,000: 8.5 ms in one such scan, in the UPDATE that marks the
   chosen runs admitted). `enable_seqscan = off` for the function (a penalty on the cost
   of a sequential scan, which the planner still takes where no index fits): every read
   of `runs` here has an index. `jit = off` with it: the penalty on the one sequential
   scan left, of the sequence `admission_wakeups`, pushed the first statement's cost past
   `jit_above_cost`, and compiling it took 40 ms a round.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (0006's text, this migration's) pairs.
_CHANGES = (
    (
        """-- Planned at every call, with the statistics of the moment: a plan cached while the runs
-- table was nearly empty, then kept for a session that sees it grow to 10,000 waiting runs,
-- took 300 ms a round instead of 3 ms.
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_custom_plan AS $fn$""",
        """-- Planned once per session, and again when the statistics of the tables change, and
-- without sequential scans of `runs`, which a kept plan would go on using as the table
-- grows (migration 0008). 0.5-0.8 ms a round; planned at every call, 1.1-1.6 ms.
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $fn$""",
    ),
    (
        "WHERE o.tenant_id = r.tenant_id AND o.trigger_id = r.trigger_id",
        "WHERE o.tenant_id = r.tenant_id AND o.trigger_id = t.id",
    ),
    (
        "WHERE o.trigger_id = r.trigger_id AND o.status = 'pending'",
        "WHERE o.trigger_id = t.id AND o.status = 'pending'",
    ),
)


def _migration(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def admission_round() -> str:
    """0006's definition with this migration's changes."""
    text = _migration("0006_admission_overlap_look_first.py").ADMISSION_ROUND
    for old, new in _CHANGES:
        if text.count(old) != 1:
            raise RuntimeError(f"0006's definition no longer has: {old[:60]!r}")
        text = text.replace(old, new)
    return text


def upgrade() -> None:
    op.execute(admission_round())


def downgrade() -> None:
    op.execute(_migration("0006_admission_overlap_look_first.py").ADMISSION_ROUND)
