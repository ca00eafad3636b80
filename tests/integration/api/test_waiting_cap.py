"""MAX_WAITING_RUNS_PER_TENANT through the API (docs/design.md section 17, app/waiting.py).

Twenty backfills used to make 20,000 pending runs, and run now without an Idempotency-Key
was unbounded. Past the cap, run now and backfill are a 409 that names the limit, and
nothing is created; the count is race-safe.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests import factories, support
from tests.integration.api.conftest import Caller, assert_error
from web import context, create_app

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
EVERY_MINUTE = {"cron": "* * * * *"}


@pytest.fixture()
def capped(settings, engine, celery_app, make_key):
    """A client of an app with a waiting cap of `limit` and a fake clock at noon."""

    def build(limit: int, tenant: str = "acme") -> Caller:
        app = create_app(dataclasses.replace(settings, max_waiting_runs_per_tenant=limit))
        app.config["TESTING"] = True
        app.extensions[context.EXTENSION].clock = support.FakeClock(NOON).now
        # No slot for anyone: every run stays pending (the waiting room under test).
        app.extensions[context.EXTENSION].settings = dataclasses.replace(
            app.extensions[context.EXTENSION].settings, max_running=1, max_running_per_tenant=1
        )
        return Caller(app.test_client(), make_key(tenant))

    return build


def pending(engine, tenant: str = "acme") -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM runs WHERE tenant_id = :t AND status = 'pending'"),
            {"t": tenant},
        ).scalar_one()


def window(minutes: int, *, ending: datetime = NOON) -> dict[str, str]:
    start = ending - timedelta(minutes=minutes)
    return {"start": start.isoformat().replace("+00:00", "Z"),
            "end": ending.isoformat().replace("+00:00", "Z")}  # fmt: skip


def fill_slot(engine) -> None:
    """Take the one slot, so that no run the API creates is admitted at once."""
    with engine.begin() as conn:
        factories.occupy_slot(conn)


def test_run_now_past_the_cap_is_409_naming_it_and_stores_nothing(capped, engine, snapshot):
    fill_slot(engine)
    acme = capped(3)
    trigger = acme.create(**EVERY_MINUTE)
    for _ in range(3):
        assert acme.post(f"/triggers/{trigger['id']}/run").status_code == 202
    before = snapshot()

    error = assert_error(acme.post(f"/triggers/{trigger['id']}/run"), 409, "conflict")

    assert "MAX_WAITING_RUNS_PER_TENANT" in error["message"] and "3" in error["message"]
    assert snapshot() == before
    assert pending(engine) == 3


def test_a_backfill_past_the_cap_is_refused_whole(capped, engine, snapshot):
    fill_slot(engine)
    acme = capped(100)
    trigger = acme.create(**EVERY_MINUTE)
    assert acme.post(f"/triggers/{trigger['id']}/backfill", json=window(60)).get_json() == {
        "created": 60, "existing": 0}  # fmt: skip
    before = snapshot()

    error = assert_error(
        acme.post(f"/triggers/{trigger['id']}/backfill", json=window(50, ending=NOON
                  - timedelta(hours=1))),
        409,
    )  # fmt: skip

    assert "MAX_WAITING_RUNS_PER_TENANT" in error["message"]
    assert snapshot() == before  # not 40 of the 50: none


def test_repeating_a_backfill_at_the_cap_adds_nothing_and_is_not_refused(capped, engine):
    fill_slot(engine)
    acme = capped(60)
    trigger = acme.create(**EVERY_MINUTE)
    path = f"/triggers/{trigger['id']}/backfill"
    assert acme.post(path, json=window(60)).get_json() == {"created": 60, "existing": 0}

    again = acme.post(path, json=window(60))

    assert again.status_code == 202
    assert again.get_json() == {"created": 0, "existing": 60}


def test_the_cap_is_per_tenant(capped, engine):
    fill_slot(engine)
    acme, globex = capped(2), capped(2, "globex")
    mine, theirs = acme.create(**EVERY_MINUTE), globex.create(**EVERY_MINUTE)
    for _ in range(2):
        acme.post(f"/triggers/{mine['id']}/run")
    assert acme.post(f"/triggers/{mine['id']}/run").status_code == 409

    assert globex.post(f"/triggers/{theirs['id']}/run").status_code == 202


def test_two_backfills_at_once_never_take_a_tenant_past_the_cap(capped, engine, app):
    """Each counts what the other committed: without the lock both would count 0 of 150
    and both add 100."""
    fill_slot(engine)
    acme = capped(150)
    trigger = acme.create(**EVERY_MINUTE)
    answers: list[int] = []
    start = threading.Barrier(2)

    def backfill(hours_ago: int) -> None:
        start.wait()
        ending = NOON - timedelta(hours=hours_ago)
        answers.append(acme.post(f"/triggers/{trigger['id']}/backfill",
                                 json=window(100, ending=ending)).status_code)  # fmt: skip

    threads = [threading.Thread(target=backfill, args=(h,)) for h in (1, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [202, 409]
    assert pending(engine) == 100


def test_room_comes_back_once_runs_leave_the_waiting_room(capped, engine):
    fill_slot(engine)
    acme = capped(2)
    trigger = acme.create(**EVERY_MINUTE)
    for _ in range(2):
        acme.post(f"/triggers/{trigger['id']}/run")
    assert acme.post(f"/triggers/{trigger['id']}/run").status_code == 409
    with engine.begin() as conn:  # one starts and finishes; the last count is a second old
        conn.execute(
            text(
                "UPDATE runs SET status = 'succeeded', finished_at = now() WHERE id = ("
                "SELECT id FROM runs WHERE tenant_id = 'acme' AND status = 'pending' LIMIT 1)"
            )
        )
        conn.execute(text("UPDATE waiting_counts SET counted_at = now() - interval '2 s'"))

    assert acme.post(f"/triggers/{trigger['id']}/run").status_code == 202
    assert pending(engine) == 2
