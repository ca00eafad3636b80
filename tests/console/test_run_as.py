"""The console shows run_as and who made and changed a trigger; an admin changes run_as, a
member cannot write a trigger that runs as someone else (docs/design.md section 18)."""

from __future__ import annotations

import html
import uuid

import pytest
from sqlalchemy import select

from app import db, principals, triggers
from app.models import Trigger
from tests.console.conftest import new_form

ECHO = {"type": "task", "name": "echo"}


def bobs_trigger(engine, clock) -> uuid.UUID:
    with db.session_scope(engine) as session:
        made = triggers.create(
            session, tenant_id="acme", now=clock.now(), max_triggers=100,
            values={"name": "bob's", "cron": "0 * * * *", "action": ECHO},
            by=principals.Actor("bob", may_act_for_anyone=False),
        )  # fmt: skip
        return made.id


def stored(engine) -> list[tuple[str, str, str, str]]:
    with db.session_scope(engine) as session:
        rows = session.scalars(select(Trigger).order_by(Trigger.created_at)).all()
        return [(t.name, t.run_as, t.created_by, t.updated_by) for t in rows]


def test_an_admin_sees_run_as_and_the_trail_and_changes_run_as(client, sign_in, engine):
    token = sign_in(principal="boss", role="admin")
    assert 'name="run_as"' in client.get("/console/triggers/new", follow_redirects=True).text

    created = client.post("/console/triggers/new", data=new_form(client, run_as="alice"))
    assert created.status_code == 303
    location = created.headers["Location"]
    page = html.unescape(client.get(location).text)
    assert '<dd id="run-as"><code>alice</code></dd>' in page
    assert "by <code>boss</code>" in page
    edit = html.unescape(client.get(f"{location}/edit").text)
    assert 'name="run_as" type="text" value="alice"' in edit

    form = {**new_form(client), "csrf_token": token, "version": "1", "run_as": "carol"}
    form.pop("form_token")
    assert client.post(f"{location}/edit", data=form).status_code == 303

    assert stored(engine) == [("nightly report", "carol", "boss", "boss")]
    assert "<code>carol</code>" in client.get("/console/triggers").text


def test_a_members_triggers_run_as_itself_and_it_has_no_run_as_field(client, sign_in, engine):
    sign_in(principal="alice", role="member")
    form_page = client.get("/console/triggers/new", follow_redirects=True).text
    assert 'name="run_as"' not in form_page and "<code>alice</code>" in form_page

    assert client.post("/console/triggers/new", data=new_form(client)).status_code == 303
    assert stored(engine) == [("nightly report", "alice", "alice", "alice")]


def test_a_members_forged_run_as_is_refused_next_to_the_field(client, sign_in, engine):
    sign_in(principal="alice", role="member")

    response = client.post("/console/triggers/new", data=new_form(client, run_as="bob"))

    assert response.status_code == 403
    assert 'id="run_as-error"' in response.text
    assert stored(engine) == []


@pytest.mark.parametrize("action", ["edit", "pause", "resume", "run", "delete"])
def test_a_member_cannot_change_a_trigger_of_another_principal(
    client, sign_in, engine, clock, published, action
):
    trigger_id = bobs_trigger(engine, clock)
    token = sign_in(principal="alice", role="member")
    before = stored(engine)
    data = {"csrf_token": token}
    if action == "edit":
        data = {**new_form(client), "csrf_token": token, "version": "1", "name": "mine"}
        data.pop("form_token")

    response = client.post(f"/console/triggers/{trigger_id}/{action}", data=data)

    assert response.status_code in (303, 403)
    if response.status_code == 303:  # back to the trigger, with the reason
        assert response.headers["Location"].endswith(f"/console/triggers/{trigger_id}")
        page = client.get(response.headers["Location"]).text
        assert "runs as another principal" in html.unescape(page)
    assert stored(engine) == before and published() == []
    # Members still read it.
    assert "<code>bob</code>" in client.get(f"/console/triggers/{trigger_id}").text


def test_a_member_has_no_webhook_secrets_page(client, sign_in):
    sign_in(principal="alice", role="member")
    page = client.get("/console/triggers").text
    assert "Webhook secrets" not in page and "alice (member)" in page

    response = client.get("/console/webhook-secrets")

    assert response.status_code == 403 and "tenant admin" in response.text
