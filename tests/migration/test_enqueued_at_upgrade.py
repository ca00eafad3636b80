"""Migration 0018: when a run was admitted is one fact, `enqueued_at`.

The upgrade fills `enqueued_at` from `admitted_at` where it is null; the new release's
lease sweep then takes back the runs an older release admitted, by `enqueued_at`. The older
release's round (`scheduler_admission_round`, which it still calls during the deploy)
stamps both columns as before, the new one (`_v2`) `enqueued_at` alone. The downgrade gives
admitted runs their `admitted_at` back from `enqueued_at`, for the older release's sweep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import create_engine, text

from app.queries import run_queue
from tests import factories, support

ADMITTED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ROUND = "(1000, 1000, 2, NULL, 4242)"


def _stamps(engine) -> dict[str, tuple[datetime | None, datetime | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT idempotency_key, admitted_at, enqueued_at FROM runs"))
        return {key: (admitted, enqueued) for key, admitted, enqueued in rows}


def _pending(engine, trigger_id, key: str) -> None:
    with engine.begin() as conn:
        factories.make_run(conn, trigger_id=trigger_id, idempotency_key=key, status="pending")


def test_enqueued_at_is_the_one_stamp_of_an_admission_across_the_upgrade_and_back() -> None:
    database = support.database_at("0017", "sched_enqueued_at")
    engine = create_engine(support.sqlalchemy_url(database))
    try:
        with engine.begin() as conn:
            trigger_id = factories.make_trigger(conn, tenant_id="acme", name="old",
                                                cron="0 * * * *", action={})  # fmt: skip
            for key, status, admitted_at, enqueued_at in (
                ("admitted, one stamp", "admitted", ADMITTED, None),
                ("admitted, both", "admitted", ADMITTED, ADMITTED + timedelta(seconds=1)),
                ("finished, one stamp", "succeeded", ADMITTED, None),
                ("waiting", "pending", None, None),
            ):
                factories.make_run(conn, trigger_id=trigger_id, idempotency_key=key,
                                   status=status, admitted_at=admitted_at,
                                   enqueued_at=enqueued_at)  # fmt: skip
        engine.dispose()

        support.migrate(database, "0018")

        assert _stamps(engine) == {
            "admitted, one stamp": (ADMITTED, ADMITTED),
            "admitted, both": (ADMITTED, ADMITTED + timedelta(seconds=1)),
            "finished, one stamp": (ADMITTED, ADMITTED),
            "waiting": (None, None),
        }
        with engine.begin() as conn:  # the new release's lease sweep sees the older's runs
            returned = run_queue.return_stale_admitted(conn, lease_seconds=60, batch=10)
        assert len(returned) == 2
        stamps = _stamps(engine)
        assert stamps["admitted, one stamp"] == (None, None), "taken back: both cleared"
        assert stamps["admitted, both"] == (None, None)

        # The older release's round stamps both columns, as it did; the new one, one.
        with engine.begin() as conn:
            conn.execute(text("UPDATE runs SET status = 'succeeded' WHERE status = 'pending'"))
        _pending(engine, trigger_id, "older round")
        with engine.begin() as conn:
            conn.execute(text(f"SELECT * FROM scheduler_admission_round{ROUND}")).all()
        _pending(engine, trigger_id, "new round")
        with engine.begin() as conn:
            conn.execute(text(f"SELECT * FROM scheduler_admission_round_v2{ROUND}")).all()
        older, new = _stamps(engine)["older round"], _stamps(engine)["new round"]
        # The older round reads clock_timestamp() once per column: the same instant, or
        # microseconds apart.
        assert older[0] is not None and abs(older[1] - older[0]) < timedelta(milliseconds=50)
        assert new[0] is None and new[1] is not None
        engine.dispose()

        command.downgrade(support.alembic_config(database), "0017")

        assert _stamps(engine)["new round"] == (new[1], new[1]), "the older sweep sees it"
        with engine.connect() as conn:
            functions = conn.execute(
                text("SELECT proname FROM pg_proc WHERE proname LIKE 'scheduler_%_v2'")
            ).scalars()
            assert sorted(functions) == ["scheduler_claim_v2"]
    finally:
        engine.dispose()
        support.drop_database(database)
