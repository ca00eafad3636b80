"""Console forms for every kind of schedule: interval, anchor, jitter and buffer_one, their
field errors named as the API names them, the live preview of jittered fires, and a run's
page showing when a jittered fire was due."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from app import db, schedule, triggers
from app.models import Run, Trigger
from tests import factories
from tests.console.conftest import NOW, new_form

HOURLY = {"name": "hourly", "cron": "0 * * * *", "timezone": "UTC"}


def create(client, **overrides: str):
    return client.post("/console/triggers/new", data=new_form(client, **overrides))


def only_trigger(engine) -> Trigger:
    with db.session_scope(engine) as session:
        (trigger,) = session.scalars(select(Trigger)).all()
        session.expunge(trigger)
        return trigger


def runs_of(engine, kind: str) -> list[Run]:
    with db.session_scope(engine) as session:
        found = session.scalars(select(Run).where(Run.kind == kind).order_by(Run.scheduled_for))
        runs = list(found)
        session.expunge_all()
        return runs


def test_an_interval_trigger_with_anchor_jitter_and_buffer_one_from_the_form(
    client, sign_in, engine
) -> None:
    sign_in()
    response = create(
        client,
        schedule_kind="interval",
        cron="ignored for an interval",
        interval_seconds="5400",
        anchor_at="2026-11-30T00:15:00Z",
        jitter_seconds="600",
        overlap_policy="buffer_one",
    )
    assert response.status_code == 303, response.text
    trigger = only_trigger(engine)
    assert (trigger.cron, trigger.run_at, trigger.interval_seconds) == (None, None, 5400)
    assert (trigger.anchor_at.isoformat(), trigger.jitter_seconds) == (
        "2026-11-30T00:15:00+00:00", 600,
    )  # fmt: skip
    assert trigger.overlap_policy == "buffer_one"
    page = client.get(response.headers["Location"]).text
    assert "Every 1 hour 30 minutes" in page and "up to 600 s" in page
    assert "Due (with jitter)" in page
    spec = schedule.TriggerSpec.of(trigger)
    first = triggers.preview(spec, after=NOW, count=1)[0]
    due = schedule.due_at(spec, first).astimezone(ZoneInfo(trigger.timezone))
    assert due != first and due.strftime("%Y-%m-%d %H:%M:%S") in page
    edit = client.get(f"{response.headers['Location']}/edit").text
    assert re.search(r'id="kind-interval"[^>]*checked', edit)
    assert 'value="5400"' in edit and 'value="2026-11-30T00:15:00Z"' in edit
    assert '<option value="buffer_one" selected>' in edit


def test_switching_an_interval_trigger_to_cron_in_the_edit_form(client, sign_in, engine) -> None:
    token = sign_in()
    location = create(client, schedule_kind="interval", interval_seconds="3600").headers["Location"]
    form = {**new_form(client), "csrf_token": token, "version": "1", "cron": "0 9 L * *"}
    form.pop("form_token")
    response = client.post(f"{location}/edit", data=form)
    assert response.status_code == 303, response.text
    trigger = only_trigger(engine)
    assert (trigger.cron, trigger.interval_seconds, trigger.anchor_at) == ("0 9 L * *", None, None)


def test_interval_and_jitter_errors_name_the_api_fields(client, sign_in, engine) -> None:
    sign_in()
    cases = [
        ({"schedule_kind": "interval", "interval_seconds": "30"}, "interval_seconds"),
        ({"schedule_kind": "interval", "interval_seconds": "soon"}, "interval_seconds"),
        ({"schedule_kind": "interval", "interval_seconds": "600", "anchor_at": "noon"},
         "anchor_at"),
        ({"schedule_kind": "interval", "interval_seconds": "600", "jitter_seconds": "900"},
         "jitter_seconds"),
        ({"jitter_seconds": "-1"}, "jitter_seconds"),
        ({"schedule_kind": "once", "run_at": "2026-12-24T18:00:00Z", "jitter_seconds": "5"},
         "jitter_seconds"),
    ]  # fmt: skip
    for overrides, field in cases:
        response = create(client, **overrides)
        assert response.status_code == 422, (overrides, response.status_code)
        assert f'id="{field}-error"' in response.text, overrides
    with db.session_scope(engine) as session:
        assert session.scalars(select(Trigger)).all() == []


def test_the_live_preview_shows_the_jittered_instant_next_to_the_nominal_one(
    client, sign_in
) -> None:
    token = sign_in()
    data = {"csrf_token": token, "schedule_kind": "interval", "interval_seconds": "3600",
            "timezone": "Europe/Paris", "jitter_seconds": "300"}  # fmt: skip
    body = client.post("/console/preview", data=data).get_json()
    spec = schedule.TriggerSpec(
        cron=None, timezone="Europe/Paris", run_at=None, start_at=None, end_at=None,
        interval_seconds=3600, anchor_at=None, jitter_seconds=300, jitter_key="",
    )  # fmt: skip
    first = triggers.preview(spec, after=NOW, count=1)[0]
    assert body["description"].startswith("Every 1 hour")
    assert body["fires"][0]["utc"] == "2026-11-30T13:00:00Z"
    assert body["fires"][0]["jittered_utc"] == schedule.due_at(spec, first).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert body["fires"][0]["jittered_local"].endswith("+01:00")
    # An edited trigger's preview draws its own jitter (the id is the jitter's key).
    trigger_id = uuid.uuid4()
    own = client.post("/console/preview", data={**data, "trigger_id": str(trigger_id)})
    keyed = schedule.due_at(
        schedule.TriggerSpec(**{**spec.__dict__, "jitter_key": str(trigger_id)}), first
    )
    assert own.get_json()["fires"][0]["jittered_utc"] == keyed.strftime("%Y-%m-%dT%H:%M:%SZ")
    plain = client.post("/console/preview", data={**data, "jitter_seconds": "0"}).get_json()
    assert "jittered_utc" not in plain["fires"][0]
    bad = client.post("/console/preview", data={**data, "interval_seconds": "5"})
    assert bad.status_code == 422 and "interval_seconds" in bad.get_json()["errors"]


def test_the_preview_button_without_scripts_shows_the_jittered_instant(client, sign_in) -> None:
    sign_in()
    form = new_form(client, cron="0 * * * *", timezone="UTC", jitter_seconds="120",
                    intent="preview")  # fmt: skip
    page = client.post("/console/triggers/new", data=form).text
    assert page.count("due with jitter") == 10


def test_the_run_page_shows_when_a_jittered_fire_was_due(client, sign_in, engine) -> None:
    token = sign_in()
    location = create(client, **HOURLY, jitter_seconds="1800").headers["Location"]
    trigger_id = location.rsplit("/", 1)[1]
    fire = NOW.replace(minute=0, second=0, microsecond=0)
    with engine.begin() as conn:  # a fire the dispatcher delayed by its jitter
        run_id = factories.make_run(
            conn, trigger_id=trigger_id, kind="scheduled", scheduled_for=fire,
            due_at=fire + timedelta(seconds=1234), idempotency_key=f"{trigger_id}:fire",
        )  # fmt: skip
    page = client.get(f"/console/runs/{run_id}").text
    due = (fire + timedelta(seconds=1234)).strftime("%Y-%m-%d %H:%M:%S")
    assert "<dt>Due at</dt>" in page and due in page
    assert "its fire plus 20 min of jitter" in page
    # A backfill of a past fire is due when it is asked for: no jitter on its page.
    form = {"csrf_token": token, "start": "2026-11-30T08:00:00Z", "end": "2026-11-30T09:00:00Z"}
    client.post(f"{location}/backfill", data=form)
    (backfill,) = runs_of(engine, "backfill")
    assert backfill.due_at == backfill.created_at
    page = client.get(f"/console/runs/{backfill.id}").text
    assert "(when it was asked for)" in page and "of jitter" not in page
