"""Console pages over the Flask test client: create (exactly once), DST marks, field errors,
tenancy, actions, and no 500 under hostile input."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import func, select

from app import db
from app.models import Run, Trigger
from tests import support
from tests.console.conftest import csrf_of, new_form


def count_triggers(engine) -> int:
    with db.session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(Trigger))


def only_trigger(engine) -> Trigger:
    with db.session_scope(engine) as session:
        (trigger,) = session.scalars(select(Trigger)).all()
        session.expunge(trigger)
        return trigger


def create(client, **overrides: str):
    return client.post("/console/triggers/new", data=new_form(client, **overrides))


def test_the_create_form_makes_a_trigger_and_shows_it(client, sign_in, engine) -> None:
    sign_in()
    response = create(client)
    assert response.status_code == 303
    trigger = only_trigger(engine)
    assert response.headers["Location"] == f"/console/triggers/{trigger.id}"
    assert (trigger.cron, trigger.timezone, trigger.payload) == (
        "30 1 * * *", "America/New_York", {"hello": "world"},
    )  # fmt: skip
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Trigger &#39;nightly report&#39; created." in page
    assert "At 01:30" in page


def test_one_form_submitted_twice_makes_one_trigger(client, sign_in, engine) -> None:
    sign_in()
    form = new_form(client)
    first = client.post("/console/triggers/new", data=form)
    again = client.post("/console/triggers/new", data=form)  # resubmission / back button
    assert first.headers["Location"] == again.headers["Location"]
    assert count_triggers(engine) == 1
    assert "This form was already submitted" in client.get(again.headers["Location"]).text
    # Back to the form's own URL: the same token, and the page says it was used.
    back = client.get(f"/console/triggers/new?token={form['form_token']}").get_data(True)
    assert f'value="{form["form_token"]}"' in back and "already submitted and created" in back
    client.post("/console/triggers/new", data=new_form(client, name="another"))
    assert count_triggers(engine) == 2  # a fresh form is a fresh token


def test_a_resubmitted_form_replays_even_when_edited_after_going_back(client, sign_in, engine):
    sign_in()
    form = new_form(client)
    first = client.post("/console/triggers/new", data=form)
    edited = client.post("/console/triggers/new", data={**form, "name": "changed my mind"})
    assert edited.headers["Location"] == first.headers["Location"]
    assert only_trigger(engine).name == "nightly report"


def test_a_bad_cron_is_shown_next_to_its_field_and_saves_nothing(client, sign_in, engine):
    sign_in()
    response = create(client, cron="61 * * * *", max_attempts="lots")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="cron-error"' in page and 'id="max_attempts-error"' in page
    assert "max_attempts: Not a valid integer." in page
    assert count_triggers(engine) == 0
    # The form keeps its token: fixing the field and submitting creates the trigger once.
    token = new_form(client)["csrf_token"]
    fixed = {**new_form(client), "form_token": _form_token(page), "csrf_token": token}
    assert client.post("/console/triggers/new", data=fixed).status_code == 303
    assert count_triggers(engine) == 1


def _form_token(html: str) -> str:
    from tests.console.conftest import FORM_TOKEN

    return FORM_TOKEN.search(html).group(1)


def test_webhook_field_errors_use_the_api_field_names(client, sign_in, engine) -> None:
    sign_in()
    response = create(
        client, **{"action.type": "webhook", "action.url": "ftp://x", "action.headers": "[1]"}
    )
    assert response.status_code == 422
    assert 'id="action.headers-error"' in response.get_data(as_text=True)
    response = create(client, **{"action.type": "webhook", "action.url": "ftp://x"})
    assert 'id="action.url-error"' in response.get_data(as_text=True)
    assert count_triggers(engine) == 0


def test_next_fires_mark_the_daylight_saving_change(client, sign_in) -> None:
    sign_in()
    # Monthly at 09:00 New York from 2026-11-30: Dec..Mar on EST, April on EDT.
    location = create(client, cron="0 9 1 * *").headers["Location"]
    page = client.get(location).get_data(as_text=True)
    assert "Fri 2027-01-01 09:00 EST" in page and "2027-01-01 14:00Z" in page
    assert "Thu 2027-04-01 09:00 EDT" in page and "2027-04-01 13:00Z" in page
    assert page.count("DST change:") == 1
    assert "DST change: UTC offset -05:00 (EST) -&gt; -04:00 (EDT)" in page


def test_another_tenants_trigger_is_a_404_page(client, sign_in, engine) -> None:
    sign_in("acme")
    location = create(client).headers["Location"]
    trigger_id = location.rsplit("/", 1)[1]
    token = csrf_of(client.get("/console/triggers").text)
    client.post("/console/sign-out", data={"csrf_token": token})
    token = sign_in("other")
    for path in ("", "/edit", "/delete"):
        response = client.get(f"/console/triggers/{trigger_id}{path}")
        assert response.status_code == 404
        assert "Trigger not found." in response.get_data(as_text=True)
    for action in ("run", "pause", "resume", "delete"):
        response = client.post(
            f"/console/triggers/{trigger_id}/{action}", data={"csrf_token": token}
        )
        assert response.status_code == 404
    assert "nightly report" not in client.get("/console/triggers").text
    assert only_trigger(engine).enabled is True


def test_pause_resume_run_now_and_delete(client, sign_in, engine, published) -> None:
    token = sign_in()
    location = create(client).headers["Location"]
    trigger_id = location.rsplit("/", 1)[1]
    client.post(f"{location}/pause", data={"csrf_token": token})
    assert only_trigger(engine).enabled is False
    listing = client.get("/console/triggers?state=paused").get_data(as_text=True)
    assert "nightly report" in listing and "paused" in listing
    assert "nightly report" not in client.get("/console/triggers?state=enabled").text
    refused = client.post(f"{location}/run", data={"csrf_token": token, "token": "t" * 20})
    assert "Cannot run now: trigger is disabled." in client.get(refused.headers["Location"]).text
    client.post(f"{location}/resume", data={"csrf_token": token})
    assert only_trigger(engine).enabled is True
    run_token = "r" * 22
    first = client.post(f"{location}/run", data={"csrf_token": token, "token": run_token})
    second = client.post(f"{location}/run", data={"csrf_token": token, "token": run_token})
    assert first.headers["Location"] == second.headers["Location"]  # a double click: one run
    run_page = client.get(first.headers["Location"]).get_data(as_text=True)
    # Admitted into a free slot at once (docs/design.md section 12); the page says so and refreshes.
    assert "status-admitted" in run_page and 'http-equiv="refresh"' in run_page
    assert "Admitted: a worker picks it up next." in run_page
    with db.session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 1
    assert len(published()) == 1
    confirm = client.get(f"{location}/delete").get_data(as_text=True)
    assert "Delete the trigger" in confirm
    client.post(f"{location}/delete", data={"csrf_token": token})
    assert count_triggers(engine) == 0
    assert client.get(f"/console/triggers/{trigger_id}").status_code == 404


def test_editing_through_the_form_updates_and_a_stale_version_is_refused(client, sign_in, engine):
    token = sign_in()
    location = create(client).headers["Location"]
    html = client.get(f"{location}/edit").get_data(as_text=True)
    assert 'value="30 1 * * *"' in html and 'name="version" value="1"' in html
    form = {**new_form(client), "csrf_token": token, "version": "1", "cron": "0 3 * * *"}
    form.pop("form_token")
    assert client.post(f"{location}/edit", data=form).status_code == 303
    assert (only_trigger(engine).cron, only_trigger(engine).version) == ("0 3 * * *", 2)
    stale = client.post(f"{location}/edit", data={**form, "cron": "0 4 * * *"})
    assert stale.status_code == 412
    bad = client.post(f"{location}/edit", data={**form, "version": "2", "cron": "0 0 31 2 *"})
    assert bad.status_code == 422 and 'id="cron-error"' in bad.text
    assert only_trigger(engine).cron == "0 3 * * *"


def test_the_preview_endpoint_reuses_the_api_preview(client, sign_in) -> None:
    token = sign_in()
    data = {"csrf_token": token, "cron": "0 9 1 * *", "timezone": "America/New_York"}
    body = client.post("/console/preview", data=data).get_json()
    assert body["fires"][0] == {
        "utc": "2026-12-01T14:00:00Z", "local": "2026-12-01T09:00:00-05:00", "change": None,
    }  # fmt: skip
    assert body["fires"][4]["change"] == "UTC offset -05:00 (EST) -> -04:00 (EDT)"
    bad = client.post("/console/preview", data={**data, "timezone": "Mars/Olympus"})
    assert bad.status_code == 422 and "timezone" in bad.get_json()["errors"]
    assert client.post("/console/preview", data={"cron": "* * * * *"}).status_code == 400


def test_the_scheduler_page_is_for_admins_only(client, sign_in) -> None:
    sign_in("acme")
    assert client.get("/console/scheduler").status_code == 404
    client.post(
        "/console/sign-out", data={"csrf_token": csrf_of(client.get("/console/triggers").text)}
    )
    sign_in("ops", admin=True)
    page = client.get("/console/scheduler").get_data(as_text=True)
    assert "Generation" in page and "test-release" in page and "Due backlog" in page


@pytest.mark.parametrize(
    "path",
    [
        "/console/triggers/not-a-uuid",
        f"/console/triggers/{uuid.UUID(int=1)}",
        "/console/triggers/%00",
        "/console/runs/%00abc",
        f"/console/runs/{uuid.UUID(int=2)}",
        "/console/nothing-here",
        "/console/triggers?cursor=%00%00",
        "/console/triggers?cursor=bm90LWpzb24",
        "/console/triggers?cursor=WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiw1XQ",
        "/console/triggers?state=%00",
        "/console/webhook-secrets?tenant=%00",
        "/console/webhook-secrets?tenant=..%2F..",
        "/console/webhook-secrets/%00/revoke",
        f"/console/webhook-secrets/{uuid.UUID(int=3)}/revoke?tenant=%00",
    ],
)
def test_hostile_paths_get_a_page_not_a_500(client, sign_in, path) -> None:
    sign_in()
    response = client.get(path)
    assert response.status_code in (200, 404, 422), response.status_code
    assert response.mimetype == "text/html"


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"name": "bad\x00name"}, "name"),
        ({"payload": '{"a": "\\u0000"}'}, "payload"),
        ({"payload": '{"a": "\\ud800"}'}, "payload"),
        ({"payload": '{"a": NaN}'}, "payload"),
        ({"payload": '{"x": 1e999}'}, "payload"),
        ({"payload": '{"x": [-1e999]}'}, "payload"),
        ({"payload": "[" * 40 + "]" * 40}, "payload"),
        ({"payload": '{"a":' * 40 + "1" + "}" * 40}, "payload"),
        ({"payload": "not json"}, "payload"),
        ({"cron": "\x00"}, "cron"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"schedule_kind": "once", "run_at": "99999-01-01T00:00:00Z"}, "run_at"),
        ({"schedule_kind": "once", "run_at": "2026-12-01T00:00:00"}, "run_at"),
        ({"max_attempts": "1e309"}, "max_attempts"),
        ({"action.type": "\x00"}, "action.type"),
        ({"overlap_policy": "sometimes"}, "overlap_policy"),
    ],
)
def test_hostile_form_input_is_a_field_error_and_changes_nothing(
    client, sign_in, engine, overrides, field
) -> None:
    sign_in()
    response = create(client, **overrides)
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    assert f"{field}:" in response.get_data(as_text=True)
    assert count_triggers(engine) == 0


def test_hostile_values_in_every_console_form_never_give_a_500(client, sign_in) -> None:
    token = sign_in()
    trigger_id = create(client).headers["Location"].rsplit("/", 1)[1]
    routes = ["/console/triggers/new", "/console/preview", "/console/webhook-secrets/rotate",
              f"/console/webhook-secrets/{uuid.UUID(int=4)}/revoke"] + [
        f"/console/triggers/{trigger_id}{suffix}"
        for suffix in ("/edit", "/run", "/backfill", "/pause", "/resume", "/delete")
    ]  # fmt: skip
    for value in ("\x00", "x" * 70_000, "{{7*7}}", "'; --", "-1", "9" * 30):
        fields = ("version", "token", "form_token", "cron", "timezone", "run_at", "start_at",
                  "payload", "action.headers", "name", "schedule_kind", "max_attempts",
                  "interval_seconds", "anchor_at", "jitter_seconds", "trigger_id", "start",
                  "end", "paused_note", "tenant")  # fmt: skip
        data = {"csrf_token": token, "action.type": "webhook", **dict.fromkeys(fields, value)}
        for route in routes:
            for query in ("", "?token=%00", "?next=%00"):
                response = client.post(route + query, data=data)
                assert response.status_code < 500, (route, query, value[:10])


def test_an_admin_sees_every_tenants_triggers(client, sign_in) -> None:
    sign_in("acme")
    location = create(client).headers["Location"]
    token = csrf_of(client.get("/console/triggers").text)
    client.post("/console/sign-out", data={"csrf_token": token})
    sign_in("ops", admin=True)
    listing = client.get("/console/triggers").get_data(as_text=True)
    assert "nightly report" in listing and "acme" in listing
    assert client.get(location).status_code == 200


def test_a_one_time_webhook_trigger_from_the_form(client, sign_in, engine) -> None:
    sign_in()
    # Anything but "once" is a cron schedule, and an empty cron is the cron field's error.
    response = create(client, schedule_kind="one-typo", cron="", name="bad kind")
    assert response.status_code == 422 and 'id="cron-error"' in response.text
    response = create(
        client,
        schedule_kind="once",
        cron="ignored when one-time",
        run_at="2026-12-24T18:00:00+01:00",
        timezone="Europe/Paris",
        **{
            "action.type": "webhook",
            "action.url": "https://hooks.example.com/xmas",
            "action.method": "PUT",
            "action.headers": '{"X-Team": "elves"}',
        },
    )
    assert response.status_code == 303, response.text
    trigger = only_trigger(engine)
    assert (trigger.cron, trigger.run_at.isoformat()) == (None, "2026-12-24T17:00:00+00:00")
    assert trigger.action == {
        "type": "webhook", "url": "https://hooks.example.com/xmas", "method": "PUT",
        "headers": {"X-Team": "elves"},
    }  # fmt: skip
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Thu 2026-12-24 18:00 CET" in page and "2026-12-24 17:00Z" in page


def test_the_list_pages_through_triggers_25_at_a_time(client, sign_in, engine, clock) -> None:
    from app import triggers

    sign_in()
    with db.session_scope(engine) as session:
        for n in range(26):
            clock.advance(seconds=1)
            values = {"name": f"t{n:02d}", "cron": "0 * * * *", "action": {"type": "task"}}
            values["action"]["name"] = "echo"
            triggers.create(
                session, tenant_id="acme", now=clock.now(), values=values, max_triggers=100,
                by=support.OWNER,
            )  # fmt: skip
    first = client.get("/console/triggers").get_data(as_text=True)
    assert "t00" in first and "t24" in first and "t25" not in first
    cursor = re.search(r'href="(/console/triggers\?cursor=[^"]+)">Next page', first).group(1)
    second = client.get(cursor.replace("&amp;", "&")).get_data(as_text=True)
    assert "t25" in second and "t24" not in second and "Next page" not in second
