"""Console pages that pause a trigger with a note (who paused it and when, shown by role
for an admin key) and backfill its missed fires."""

from __future__ import annotations

from sqlalchemy import select

from app import db
from app.models import Run, Trigger
from tests.console.conftest import NOW, csrf_of, new_form

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


# --- pause with a note ----------------------------------------------------------------


def test_a_pause_note_is_shown_with_who_paused_and_when_and_resume_clears_it(
    client, sign_in, engine, make_key
) -> None:
    token = sign_in()
    location = create(client).headers["Location"]
    page = client.get(location).text
    assert 'name="paused_note"' in page and 'for="f-paused_note"' in page
    note = "Vendor API down until Monday <b>"
    response = client.post(f"{location}/pause", data={"csrf_token": token, "paused_note": note})
    assert response.status_code == 303
    trigger = only_trigger(engine)
    assert (trigger.enabled, trigger.paused_note, trigger.paused_at) == (False, note, NOW)
    assert trigger.paused_by and trigger.paused_by in client.get("/console/triggers").text
    listing = client.get("/console/triggers?state=paused").text
    assert "Vendor API down until Monday &lt;b&gt;" in listing  # escaped, never markup
    page = client.get(location).text
    assert 'id="paused-note"' in page and "Vendor API down until Monday &lt;b&gt;" in page
    assert f"by key {trigger.paused_by}" in page and "2026-11-30 12:00:00" in page
    client.post(f"{location}/resume", data={"csrf_token": token})
    trigger = only_trigger(engine)
    assert (trigger.enabled, trigger.paused_note, trigger.paused_at, trigger.paused_by) == (
        True, None, None, None,
    )  # fmt: skip
    assert "Vendor API" not in client.get("/console/triggers").text


def test_a_pause_without_a_note_is_still_a_pause(client, sign_in, engine) -> None:
    token = sign_in()
    location = create(client).headers["Location"]
    client.post(f"{location}/pause", data={"csrf_token": token, "paused_note": "   "})
    trigger = only_trigger(engine)
    assert (trigger.enabled, trigger.paused_note) == (False, None)


def test_a_bad_pause_note_is_shown_next_to_its_field_and_pauses_nothing(
    client, sign_in, engine
) -> None:
    token = sign_in()
    location = create(client).headers["Location"]
    for note in ("x" * 501, "nul\x00note"):
        response = client.post(f"{location}/pause", data={"csrf_token": token, "paused_note": note})
        assert response.status_code == 422
        assert 'id="paused_note-error"' in response.text and "paused_note:" in response.text
        assert only_trigger(engine).enabled is True


# --- backfill -------------------------------------------------------------------------


def test_a_backfill_from_the_trigger_page_reports_created_and_existing(
    client, sign_in, engine, published
) -> None:
    token = sign_in()
    location = create(client, **HOURLY).headers["Location"]
    assert 'id="f-start"' in client.get(location).text
    form = {"csrf_token": token, "start": "2026-11-30T08:00:00Z", "end": "2026-11-30T11:00:00Z"}
    response = client.post(f"{location}/backfill", data=form)
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).text
    assert "Backfill: 3 runs created, 0 fires already had a run." in page
    runs = runs_of(engine, "backfill")
    assert [run.scheduled_for.hour for run in runs] == [8, 9, 10]
    assert set(published()) == {str(run.id) for run in runs}  # handed off, as the API does
    again = client.post(f"{location}/backfill", data={**form, "start": "2026-11-30T07:00:00Z"})
    page = client.get(again.headers["Location"]).text
    assert "Backfill: 1 run created, 3 fires already had a run." in page
    assert len(runs_of(engine, "backfill")) == 4


def test_backfill_errors_are_shown_next_to_the_fields_the_api_names(
    client, sign_in, engine
) -> None:
    token = sign_in()
    location = create(client, **HOURLY).headers["Location"]
    cases = [
        ({"start": "", "end": "2026-11-30T11:00:00Z"}, "start"),
        ({"start": "yesterday", "end": "2026-11-30T11:00:00Z"}, "start"),
        ({"start": "2026-11-30T08:00:00", "end": "2026-11-30T11:00:00Z"}, "start"),
        ({"start": "2026-11-30T11:00:00Z", "end": "2026-11-30T08:00:00Z"}, "end"),
        ({"start": "2026-11-30T08:00:00Z", "end": "2026-12-01T08:00:00Z"}, "end"),
        ({"start": "2026-10-01T00:00:00Z", "end": "2026-11-30T11:00:00Z"}, "start"),  # too old
        ({"start": "\x00", "end": "2026-11-30T11:00:00Z"}, "start"),
    ]
    for fields, name in cases:
        response = client.post(f"{location}/backfill", data={"csrf_token": token, **fields})
        assert response.status_code == 422, (fields, response.status_code)
        assert f'id="{name}-error"' in response.text, fields
        assert f'value="{fields["end"]}"' in response.text  # what was typed is kept
    assert runs_of(engine, "backfill") == []


def test_a_paused_trigger_is_not_backfilled(client, sign_in, engine) -> None:
    token = sign_in()
    location = create(client, **HOURLY).headers["Location"]
    client.post(f"{location}/pause", data={"csrf_token": token})
    form = {"csrf_token": token, "start": "2026-11-30T08:00:00Z", "end": "2026-11-30T11:00:00Z"}
    response = client.post(f"{location}/backfill", data=form)
    assert "Cannot backfill: trigger is disabled." in client.get(response.headers["Location"]).text
    assert runs_of(engine, "backfill") == []


def test_another_tenant_cannot_backfill(client, sign_in, engine) -> None:
    sign_in("acme")
    location = create(client, **HOURLY).headers["Location"]
    client.post("/console/sign-out", data={"csrf_token": csrf_of(client.get(location).text)})
    token = sign_in("intruder")
    form = {"csrf_token": token, "start": "2026-11-30T08:00:00Z", "end": "2026-11-30T11:00:00Z"}
    assert client.post(f"{location}/backfill", data=form).status_code == 404
    assert client.post(f"{location}/pause", data=form).status_code == 404
    assert runs_of(engine, "backfill") == [] and only_trigger(engine).enabled is True


def test_a_pause_by_an_admin_key_shows_admin_not_the_keys_prefix(client, sign_in) -> None:
    sign_in("acme")
    location = create(client).headers["Location"]
    client.post("/console/sign-out", data={"csrf_token": csrf_of(client.get(location).text)})
    token = sign_in("ops", admin=True)
    admin_prefix = client.get("/console/triggers").text.split("tsk_", 1)[1][:8]
    client.post(f"{location}/pause", data={"csrf_token": token, "paused_note": "db upgrade"})
    client.post("/console/sign-out", data={"csrf_token": token})
    sign_in("acme")

    page = client.get(location).text
    assert "by admin:" in page and admin_prefix not in page
