"""Admission with many waiting tenants (docs/design.md section 12): a round finds its
candidate tenants by walking the waiting room in fire order, so its cost follows the slots it
fills, not the number of tenants waiting; when the walk runs long it falls back to one probe
per waiting tenant. Either way it admits exactly what the fair order says, which a plain
Python model of that order checks here on random waiting rooms, and exactly what the round
before the walk (migration 0009's, which listed every waiting tenant) admitted, on random
rooms with due retries, cancel requests and one-at-a-time triggers.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from app import admission
from app.queries.run_queue import ADMISSION_LOCK
from tests import factories

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Run:
    tenant: str
    at: datetime
    id: uuid.UUID
    # "retrying": pending after a failed attempt, its backoff an hour away (not eligible);
    # "due": the same with its backoff passed; "taken back": pending after its worker was
    # lost (attempt 1, no backoff). The last two wait like any pending run.
    status: str = "pending"


def _load(engine: Engine, runs: list[Run]) -> None:
    """One trigger per tenant, then the runs (manual ones: a tenant may have several at one
    instant), in two statements."""
    tenants = sorted({run.tenant for run in runs})
    pseudo = [run.status for run in runs]

    def when(case: str) -> factories.Sql:
        return factories.sql(f"CASE (CAST(:pseudo AS text[]))[n] {case} END", pseudo=pseudo)

    with engine.begin() as conn:
        trigger_ids = factories.make_triggers(
            conn, tenant_id=factories.each(tenants), name="t", cron="* * * * *"
        )
        trigger_of = dict(zip(tenants, trigger_ids, strict=True))
        factories.make_runs(
            conn,
            id=factories.each(run.id for run in runs),
            trigger_id=factories.each(trigger_of[run.tenant] for run in runs),
            tenant_id=factories.each(run.tenant for run in runs),
            scheduled_for=factories.each(run.at for run in runs),
            kind="manual",
            idempotency_key=factories.each(str(run.id) for run in runs),
            status=when("WHEN 'retrying' THEN 'pending' WHEN 'due' THEN 'pending' "
                        "WHEN 'taken back' THEN 'pending' ELSE (CAST(:pseudo AS text[]))[n]"),
            attempt=when("WHEN 'pending' THEN 0 ELSE 1"),
            not_before=when("WHEN 'retrying' THEN now() + interval '1 hour' "
                            "WHEN 'due' THEN now() - interval '1 hour'"),
            started_at=when("WHEN 'running' THEN now()"),
            heartbeat_at=when("WHEN 'running' THEN now()"),
        )  # fmt: skip
        conn.execute(text("ANALYZE runs"))


def _fair_order(runs: list[Run], max_running: int, max_per_tenant: int) -> set[uuid.UUID]:
    """What one round must admit, straight from the rule: candidate tenants below their cap,
    fewest in progress first, then oldest waiting fire, then tenant id (free x factor of
    them); each one's oldest fires; ranked by in progress + place in line, fire, id. A retry
    whose backoff has not passed neither runs nor gives its tenant a place in line."""
    busy = Counter(run.tenant for run in runs if run.status == "running")
    free = max(max_running - sum(busy.values()), 0)
    line: dict[str, list[Run]] = {}
    waiting = (r for r in runs if r.status in ("pending", "due", "taken back"))
    for run in sorted(waiting, key=lambda r: (r.at, r.id)):
        line.setdefault(run.tenant, []).append(run)
    candidates = sorted(
        (busy[tenant], waiting[0].at, tenant)
        for tenant, waiting in line.items()
        if busy[tenant] < max_per_tenant
    )[: free * admission.CANDIDATE_FACTOR]
    ranked = [
        (n + place, run.at, run.id)
        for n, _, tenant in candidates
        for place, run in enumerate(line[tenant][: min(free, max_per_tenant - n)], start=1)
    ]
    return {run_id for _, _, run_id in sorted(ranked)[:free]}


def _admit_counting_probes(
    engine: Engine, max_running: int, max_per_tenant: int
) -> tuple[set[uuid.UUID], int]:
    """One round: (the runs it admitted, how many index scans of `runs` it started, rescans
    of a LATERAL included). The counter is read before and after, in the round's own
    transaction: it may still hold the connection's earlier transactions (PostgreSQL
    reports a backend's counts every second or so)."""
    scans = text("SELECT idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'runs'")
    with engine.begin() as conn:
        before = conn.execute(scans).scalar_one()
        rows = conn.execute(
            text("SELECT run_id FROM scheduler_admission_round_v2(:m, :c, :f, NULL, :key)"),
            {"m": max_running, "c": max_per_tenant, "f": admission.CANDIDATE_FACTOR,
             "key": ADMISSION_LOCK},
        ).all()  # fmt: skip
        probes = conn.execute(scans).scalar_one() - before
    return {row.run_id for row in rows if row.run_id is not None}, probes


def _finish_some(engine: Engine, runs: list[Run], rng: random.Random) -> list[Run]:
    """Admitted runs become running; about half of the runs in progress finish."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE runs SET status = 'running' WHERE status = 'admitted'"))
        states = dict(
            conn.execute(
                text(
                    "SELECT id, CASE WHEN not_before > now() AND status = 'pending' "
                    "THEN 'retrying' ELSE status END FROM runs"
                )
            ).all()
        )
    ending = [run_id for run_id, status in states.items() if status == "running"]
    ending = [run_id for run_id in ending if rng.random() < 0.5]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE runs SET status = 'succeeded' WHERE id = ANY(:ids)"), {"ids": ending}
        )
    done = set(ending)
    return [
        Run(run.tenant, run.at, run.id, "succeeded" if run.id in done else states[run.id])
        for run in runs
    ]


def _random_room(rng: random.Random, *, long_walk: bool) -> list[Run]:
    """40-80 tenants with 1-5 fires at a handful of instants (ties across tenants), some with
    runs in progress, some with retries (in their backoff or due) and runs taken back. With
    `long_walk`, two tenants in progress also have hundreds of older fires at distinct
    instants: more than the walk's budget before anyone else's fire."""
    runs: list[Run] = []
    instants = [T0 + timedelta(minutes=m) for m in range(6)]
    for n in range(rng.randint(40, 80)):
        tenant = f"t{n:03d}"
        for _ in range(rng.randint(1, 5)):
            runs.append(Run(tenant, rng.choice(instants), uuid.uuid4()))
        for kind in ("retrying", "due", "taken back"):
            if rng.random() < 0.2:
                at = T0 + timedelta(minutes=rng.randint(-2, 6))
                runs.append(Run(tenant, at, uuid.uuid4(), kind))
        if rng.random() < 0.3:
            runs += [Run(tenant, T0, uuid.uuid4(), "running") for _ in range(rng.randint(1, 3))]
    if long_walk:
        for tenant in ("t000", "t001"):
            runs.append(Run(tenant, T0, uuid.uuid4(), "running"))
            runs += [Run(tenant, T0 - timedelta(minutes=m), uuid.uuid4()) for m in range(1, 400)]
    return runs


@pytest.mark.parametrize("long_walk", [False, True], ids=["walk", "fallback"])
@pytest.mark.parametrize("seed", range(3))
def test_a_round_admits_exactly_what_the_fair_order_says(
    engine: Engine, seed: int, long_walk: bool
) -> None:
    rng = random.Random(seed)
    runs = _random_room(rng, long_walk=long_walk)
    _load(engine, runs)
    for _ in range(6):
        max_running = sum(r.status == "running" for r in runs) + rng.randint(1, 12)
        max_per_tenant = rng.randint(1, 4)
        expected = _fair_order(runs, max_running, max_per_tenant)

        admitted, _ = _admit_counting_probes(engine, max_running, max_per_tenant)

        assert admitted == expected
        runs = _finish_some(
            engine,
            [Run(r.tenant, r.at, r.id, "admitted" if r.id in admitted else r.status) for r in runs],
            rng,
        )


def test_a_round_probes_about_as_many_tenants_as_it_has_slots_to_fill(engine: Engine) -> None:
    # 2,000 tenants wait with one fire each; the oldest fires are the first to go.
    runs = [Run(f"t{n:04d}", T0 + timedelta(seconds=n % 7), uuid.uuid4()) for n in range(2000)]
    _load(engine, runs)

    admitted, probes = _admit_counting_probes(engine, max_running=4, max_per_tenant=2)

    assert admitted == _fair_order(runs, 4, 2)
    # The walk: one probe per tenant it passes (8 candidates for 4 slots) and one per
    # candidate's line; a probe of every waiting tenant would be 2,000.
    assert probes < 60, probes


def test_a_walk_past_its_budget_falls_back_to_every_tenant_and_stays_fair(
    engine: Engine,
) -> None:
    # Tenant "a" has a run in progress and 1,000 older fires at distinct instants: the walk
    # in fire order meets all of them before anyone else's fire.
    runs = [Run("a", T0, uuid.uuid4(), "running")]
    runs += [Run("a", T0 - timedelta(minutes=m), uuid.uuid4()) for m in range(1, 1001)]
    runs += [Run(f"b{n:02d}", T0 + timedelta(minutes=1), uuid.uuid4()) for n in range(30)]
    _load(engine, runs)

    admitted, _ = _admit_counting_probes(engine, max_running=5, max_per_tenant=3)

    assert admitted == _fair_order(runs, 5, 3)
    tenants = [run.tenant for run in runs if run.id in admitted]
    assert len(set(tenants)) == 4 and "a" not in tenants


SIGNATURE = "(bigint, bigint, bigint, bigint, bigint)"
ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "admission_round"  # older definitions, frozen
WALK_SLACK = 256  # the walk's steps past the tenants it needs (migration 0010)
# Tenant names that sort differently by byte and by many collations, with spaces and case.
NAMES = ["a", "A", "b", "B", "a ", "a  ", "é", "e", "Z", "_x", "-y", "10", "9", "ab", "aB"]
NAMES += [f"t{n}" for n in range(1, 9)]


def _install_rounds(engine: Engine) -> list[str]:
    """0009's round as `list_every_tenant` (a frozen copy, tests/fixtures), and head's walk
    (app/queries/sql) with almost no budget beyond the
    tenants it needs (so that it falls back, or ends just in time) as `walk_slack_<n>`;
    returns the names to compare with the first, the installed round among them."""
    walk = (ROOT / "app" / "queries" / "sql" / "admission_round_v2.sql").read_text()
    create = "CREATE OR REPLACE FUNCTION scheduler_admission_round("
    walk = walk.replace("CREATE OR REPLACE FUNCTION scheduler_admission_round_v2(", create)
    definitions = {"list_every_tenant": (FIXTURES / "0008.sql").read_text()}
    for slack in (0, 1, 5):
        budget = f"+ tenants + {WALK_SLACK}"
        assert walk.count(budget) == 1
        definitions[f"walk_slack_{slack}"] = walk.replace(budget, f"+ tenants + {slack}")
    with engine.begin() as conn:
        for name, definition in definitions.items():
            conn.exec_driver_sql(definition.replace(create, f"CREATE OR REPLACE FUNCTION {name}("))
            conn.exec_driver_sql(f"ALTER FUNCTION {name}{SIGNATURE} SET enable_bitmapscan = off")
    return ["scheduler_admission_round_v2", *(n for n in definitions if n.startswith("walk"))]


def _round_rolled_back(
    engine: Engine, function: str, limits: tuple[int, int, int]
) -> tuple[frozenset[uuid.UUID], int | None]:
    """(admitted, skipped) of one round of `function`, rolled back."""
    with engine.connect() as conn, conn.begin() as tx:
        rows = conn.execute(
            text(f"SELECT run_id, skipped FROM {function}(:m, :c, :f, NULL, 4242)"),
            dict(zip("mcf", limits, strict=True)),
        ).all()
        tx.rollback()
    admitted = frozenset(row.run_id for row in rows if row.run_id is not None)
    return admitted, rows[0].skipped if rows else None


def _mixed_room(engine: Engine, rng: random.Random) -> None:
    """Tenants with 1-3 triggers (some `skip` or `buffer_one`), runs pending, admitted,
    running or finished at a few instants, some older; retries whose backoff has passed
    (one still in its backoff gives its tenant no place in line now, where 0009's round
    gave it one: test_admission.py), cancel requests."""
    instants = [T0 + timedelta(minutes=k) for k in range(rng.randint(1, 5))]
    triggers, runs = [], []
    for tenant in rng.sample(NAMES, rng.randint(3, len(NAMES))):
        for _ in range(rng.randint(1, 3)):
            trigger = uuid.uuid4()
            triggers.append((trigger, tenant, rng.choice(["allow", "allow", "skip", "buffer_one"])))
            for _ in range(rng.randint(0, 6)):
                status = rng.choice(["pending"] * 5 + ["running", "admitted", "succeeded"])
                retry = status == "pending" and rng.random() < 0.2
                runs.append({
                    "id": uuid.uuid4(), "trigger": trigger, "tenant": tenant, "status": status,
                    "at": rng.choice(instants) if rng.random() < 0.8
                    else T0 - timedelta(minutes=rng.randint(1, 30)),
                    "attempt": 1 if retry or status == "running" else 0,
                    "nb": datetime.now(UTC) - timedelta(hours=1) if retry else None,
                    "cancel": datetime.now(UTC) if status == "pending" and rng.random() < 0.1
                    else None,
                })  # fmt: skip
    with engine.begin() as conn:
        factories.make_triggers(
            conn,
            id=factories.each(trigger for trigger, _, _ in triggers),
            tenant_id=factories.each(tenant for _, tenant, _ in triggers),
            name="t",
            cron="* * * * *",
            overlap_policy=factories.each(policy for _, _, policy in triggers),
        )
        factories.make_runs(
            conn,
            id=factories.each(run["id"] for run in runs),
            trigger_id=factories.each(run["trigger"] for run in runs),
            tenant_id=factories.each(run["tenant"] for run in runs),
            scheduled_for=factories.each(run["at"] for run in runs),
            kind="manual",
            idempotency_key=factories.each(str(run["id"]) for run in runs),
            status=factories.each(run["status"] for run in runs),
            attempt=factories.each(run["attempt"] for run in runs),
            not_before=factories.each(run["nb"] for run in runs),
            cancel_requested_at=factories.each(run["cancel"] for run in runs),
            started_at=factories.sql("now()"),
            heartbeat_at=factories.sql("now()"),
            enqueued_at=factories.sql("now()"),
        )
        conn.execute(text("ANALYZE runs"))


@pytest.mark.parametrize("seed", range(40))
def test_the_walk_admits_and_skips_what_the_list_of_every_tenant_did(
    engine: Engine, seed: int
) -> None:
    functions = _install_rounds(engine)
    rng = random.Random(seed)
    _mixed_room(engine, rng)
    with engine.connect() as conn:
        in_progress = conn.execute(
            text("SELECT count(*) FROM runs WHERE status IN ('admitted', 'running')")
        ).scalar_one()
    for _ in range(8):
        limits = (in_progress + rng.randint(0, 15), rng.randint(1, 5), rng.choice([1, 2, 3]))
        expected = _round_rolled_back(engine, "list_every_tenant", limits)
        for function in functions:
            assert _round_rolled_back(engine, function, limits) == expected, (function, limits)
