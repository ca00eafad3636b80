"""Console pages over the work that landed after the first pass: pause notes, backfill,
interval schedules and jitter, overlap buffer_one, webhook secrets, admission."""

from __future__ import annotations

import re
import uuid
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy import select

from app import db, run_history, schedule, secret_box, triggers
from app.models import Run, Trigger, WebhookSecret
from tests import support
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


# --- 1. pause with a note ---------------------------------------------------------------


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


# --- 2. backfill --------------------------------------------------------------------------


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


# --- 3. every kind of schedule, jitter, buffer_one ---------------------------------------


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


# --- 4. webhook secrets -------------------------------------------------------------------


def secrets_of(engine, tenant: str) -> list[SimpleNamespace]:
    """Every secret row of the tenant, revoked ones too, with its value decrypted."""
    with db.session_scope(engine) as session:
        found = session.scalars(
            select(WebhookSecret)
            .where(WebhookSecret.tenant_id == tenant)
            .order_by(WebhookSecret.created_at)
        )
        return [
            SimpleNamespace(id=row.id, secret=secret_box.decrypt(row.secret_ciphertext),
                            expires_at=row.expires_at, revoked_at=row.revoked_at)
            for row in found
        ]  # fmt: skip


def test_a_tenant_lists_rotates_and_revokes_its_webhook_secrets(
    client, sign_in, engine, clock
) -> None:
    token = sign_in("acme")
    assert "No active secret" in client.get("/console/webhook-secrets").text
    response = client.post("/console/webhook-secrets/rotate", data={"csrf_token": token})
    assert response.status_code == 303
    (first,) = secrets_of(engine, "acme")
    page = client.get(response.headers["Location"]).text
    assert first.secret in page and "current" in page  # the value, as the API shows it
    clock.advance(seconds=60)
    client.post("/console/webhook-secrets/rotate", data={"csrf_token": token})
    old, new = secrets_of(engine, "acme")
    assert old.expires_at is not None and new.expires_at is None
    page = client.get("/console/webhook-secrets").text
    assert old.secret in page and new.secret in page
    confirm = client.get(f"/console/webhook-secrets/{old.id}/revoke").text
    assert "Revoke the webhook secret?" in confirm and 'name="csrf_token"' in confirm
    assert secrets_of(engine, "acme")[0].revoked_at is None  # the GET changed nothing
    client.post(f"/console/webhook-secrets/{old.id}/revoke", data={"csrf_token": token})
    assert secrets_of(engine, "acme")[0].revoked_at is not None
    page = client.get("/console/webhook-secrets").text
    assert old.secret not in page and new.secret in page


def test_webhook_secret_forms_need_the_csrf_token(client, sign_in, engine) -> None:
    sign_in("acme")
    assert client.post("/console/webhook-secrets/rotate").status_code == 400
    assert secrets_of(engine, "acme") == []


def test_a_tenant_cannot_touch_another_tenants_secret(client, sign_in, engine) -> None:
    token = sign_in("acme")
    client.post("/console/webhook-secrets/rotate", data={"csrf_token": token})
    (secret,) = secrets_of(engine, "acme")
    client.post("/console/sign-out", data={"csrf_token": token})
    token = sign_in("intruder")
    page = client.get("/console/webhook-secrets?tenant=acme").text
    assert secret.secret not in page  # a tenant key sees its own tenant, whatever it asks
    revoke = client.post(f"/console/webhook-secrets/{secret.id}/revoke", data={"csrf_token": token})
    assert revoke.status_code == 404
    assert secrets_of(engine, "acme")[0].revoked_at is None
    client.post("/console/webhook-secrets/rotate", data={"csrf_token": token, "tenant": "acme"})
    assert len(secrets_of(engine, "acme")) == 1 and len(secrets_of(engine, "intruder")) == 1


def test_an_admin_chooses_the_tenant_whose_secrets_it_manages(client, sign_in, engine) -> None:
    token = sign_in("ops", admin=True)
    assert "Choose a tenant" in client.get("/console/webhook-secrets").text
    response = client.post(
        "/console/webhook-secrets/rotate", data={"csrf_token": token, "tenant": "acme"}
    )
    assert response.headers["Location"] == "/console/webhook-secrets?tenant=acme"
    (secret,) = secrets_of(engine, "acme")
    assert secret.secret in client.get("/console/webhook-secrets?tenant=acme").text
    assert (
        client.post("/console/webhook-secrets/rotate", data={"csrf_token": token}).status_code
        == 422
    )
    for bad in ("../etc", "a\x00b", "acme\n", "x" * 200):
        response = client.get("/console/webhook-secrets", query_string={"tenant": bad})
        assert response.status_code == 422 and "tenant" in response.text
    client.post(f"/console/webhook-secrets/{secret.id}/revoke",
                data={"csrf_token": token, "tenant": "acme"})  # fmt: skip
    assert secrets_of(engine, "acme")[0].revoked_at is not None
    assert secrets_of(engine, "ops") == []


# --- 5. scheduler page: the waiting room ------------------------------------------------


def test_the_scheduler_page_shows_waiting_runs_by_tenant_and_slots(
    client, sign_in, engine, clock
) -> None:
    with db.session_scope(engine) as session:
        for tenant, waiting in (("busy", 3), ("quiet", 1)):
            values = {"name": "t", "cron": "0 * * * *", "action": {"type": "task", "name": "echo"}}
            trigger = triggers.create(
                session, tenant_id=tenant, values=values, now=clock.now(), max_triggers=100,
                by=support.OWNER,
            )  # fmt: skip
            for _ in range(waiting):  # pending, never handed off: waiting for a slot
                run_history.run_now(
                    session, trigger.id, scope=None, request_key=None, now=NOW, max_waiting=100,
                    by=support.OWNER,
                )  # fmt: skip
    sign_in("ops", admin=True)
    page = client.get("/console/scheduler").text
    assert "Waiting runs by tenant" in page and "Slots in use" in page
    rows = re.findall(r'<tr><th scope="row">(\w+)</th><td>(\d+)</td></tr>', page)
    waiting = page[page.index("Waiting runs by tenant") : page.index("Runs by status")]
    assert re.findall(r'<th scope="row">(\w+)</th><td>(\d+)</td>', waiting) == [
        ("busy", "3"), ("quiet", "1"),
    ]  # fmt: skip
    assert ("pending", "4") in rows and ("admitted", "0") in rows
    assert re.search(r"<dt>Slots in use</dt><dd>0 of \d+ \(admitted and running\)", page)


# --- 6. run page: admitted and due_at -----------------------------------------------------


def test_the_run_page_shows_when_a_jittered_fire_was_due(client, sign_in, engine) -> None:
    token = sign_in()
    location = create(client, **HOURLY, jitter_seconds="1800").headers["Location"]
    form = {"csrf_token": token, "start": "2026-11-30T08:00:00Z", "end": "2026-11-30T09:00:00Z"}
    client.post(f"{location}/backfill", data=form)
    (run,) = runs_of(engine, "backfill")
    assert run.due_at != run.scheduled_for
    page = client.get(f"/console/runs/{run.id}").text
    assert "<dt>Due at</dt>" in page and run.due_at.strftime("%Y-%m-%d %H:%M:%S") in page
    jitter = int((run.due_at - run.scheduled_for).total_seconds())
    assert "of jitter" in page and run.status in ("admitted", "pending")
    assert jitter > 0


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
