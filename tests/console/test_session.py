"""Console sign-in: the cookie, CSRF, sign-out, expiry and revocation (Flask test client)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app import db, keys
from app.models import Trigger
from tests.console.conftest import NOW, csrf_of
from web import create_app


def test_a_page_needing_a_session_redirects_to_sign_in(client) -> None:
    response = client.get("/console/triggers?state=paused")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/?reason=required")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Sign in to see this page." in page


def test_signing_in_sets_a_signed_httponly_lax_cookie_without_the_key(client, make_key) -> None:
    key = make_key("acme")
    token = csrf_of(client.get("/console/").get_data(as_text=True))
    response = client.post("/console/", data={"key": key.key, "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/triggers"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert key.key not in cookie and key.key[4:20] not in cookie
    page = client.get("/console/triggers").get_data(as_text=True)
    assert "acme" in page and key.prefix in page


def test_the_cookie_is_secure_when_the_request_came_over_https(client, make_key) -> None:
    key = make_key("acme").key
    headers = {"X-Forwarded-Proto": "https"}
    token = csrf_of(client.get("/console/", headers=headers).get_data(as_text=True))
    response = client.post("/console/", data={"key": key, "csrf_token": token}, headers=headers)
    assert "Secure" in response.headers["Set-Cookie"]


def test_the_cookie_is_secure_over_plain_http_when_the_setting_says_so(
    settings, engine, celery_app, make_key
) -> None:
    app = create_app(dataclasses.replace(settings, session_cookie_secure=True))
    client = app.test_client()
    token = csrf_of(client.get("/console/").get_data(as_text=True))
    response = client.post("/console/", data={"key": make_key("acme").key, "csrf_token": token})
    assert "Secure" in response.headers["Set-Cookie"]


def test_every_console_page_is_no_store(client, sign_in) -> None:
    # The secrets page shows secret values: no copy may stay in a cache.
    assert client.get("/console/").headers["Cache-Control"] == "no-store"
    sign_in()
    for path in ("/console/triggers", "/console/webhook-secrets", "/console/nope",
                 "/console/triggers/new"):  # fmt: skip
        assert client.get(path).headers["Cache-Control"] == "no-store", path


def test_hsts_is_sent_over_https_only(client) -> None:
    assert "Strict-Transport-Security" not in client.get("/console/").headers
    assert "Strict-Transport-Security" not in client.get("/openapi.json").headers
    for path in ("/console/", "/openapi.json"):
        secure = client.get(path, headers={"X-Forwarded-Proto": "https"})
        assert secure.headers["Strict-Transport-Security"] == "max-age=31536000", path
        assert (
            client.get(path, base_url="https://localhost").headers["Strict-Transport-Security"]
            == "max-age=31536000"
        )


def test_an_unknown_key_is_refused_with_a_message(client) -> None:
    token = csrf_of(client.get("/console/").get_data(as_text=True))
    response = client.post("/console/", data={"key": "tsk_nope", "csrf_token": token})
    assert response.status_code == 401
    assert "That key is unknown or revoked." in response.get_data(as_text=True)
    assert client.get("/console/triggers").status_code == 302


def test_sign_in_then_returns_to_the_page_asked_for_but_never_off_site(client, make_key) -> None:
    key = make_key("acme").key
    token = csrf_of(client.get("/console/").get_data(as_text=True))
    response = client.post(
        "/console/?next=/console/scheduler", data={"key": key, "csrf_token": token}
    )
    assert response.headers["Location"] == "/console/scheduler"
    token = csrf_of(client.get("/console/triggers").get_data(as_text=True))
    assert client.post("/console/sign-out", data={"csrf_token": token}).status_code == 302
    token = csrf_of(client.get("/console/").get_data(as_text=True))
    response = client.post(
        "/console/?next=//evil.example/x", data={"key": key, "csrf_token": token}
    )
    assert response.headers["Location"] == "/console/triggers"


@pytest.mark.parametrize(
    "target",
    ["/console/x%0d%0aSet-Cookie:%20a=b", "/console/%0a", "/console/x%09y", "/console/%7f"],
)
def test_a_next_with_control_characters_goes_to_the_triggers_not_a_500(
    client, make_key, target
) -> None:
    key = make_key("acme").key
    token = csrf_of(client.get("/console/").get_data(as_text=True))
    response = client.post(f"/console/?next={target}", data={"key": key, "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/triggers"


def test_sign_out_ends_the_session(client, sign_in) -> None:
    token = sign_in()
    response = client.post("/console/sign-out", data={"csrf_token": token})
    assert response.status_code == 302
    assert "You are signed out." in client.get(response.headers["Location"]).get_data(True)
    assert client.get("/console/triggers").status_code == 302


def test_a_copied_cookie_replayed_after_sign_out_is_signed_out(client, sign_in) -> None:
    token = sign_in()
    copied = client.get_cookie("console_session", path="/console").value
    client.post("/console/sign-out", data={"csrf_token": token})

    client.set_cookie("console_session", copied, path="/console")
    response = client.get("/console/triggers")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/?reason=signed_out")


def test_signing_in_again_after_sign_out_works_and_old_cookies_stay_out(client, sign_in) -> None:
    token = sign_in()
    first = client.get_cookie("console_session", path="/console").value
    client.post("/console/sign-out", data={"csrf_token": token})
    sign_in()
    assert client.get("/console/triggers").status_code == 200
    client.set_cookie("console_session", first, path="/console")
    assert client.get("/console/triggers").status_code == 302


def test_a_session_older_than_its_lifetime_gets_the_expired_page(client, sign_in, clock) -> None:
    sign_in()
    clock.advance(hours=12, seconds=1)
    response = client.get("/console/triggers")
    assert response.headers["Location"].startswith("/console/?reason=expired")
    assert "Your session expired." in client.get(response.headers["Location"]).get_data(True)


def test_revoking_the_key_ends_its_console_sessions(client, engine, make_key) -> None:
    key = make_key("acme")
    token = csrf_of(client.get("/console/").get_data(as_text=True))
    client.post("/console/", data={"key": key.key, "csrf_token": token})
    assert client.get("/console/triggers").status_code == 200
    with db.session_scope(engine) as session:
        keys.revoke(session, key.prefix, now=NOW + timedelta(minutes=1))
    response = client.get("/console/triggers")
    assert response.headers["Location"].startswith("/console/?reason=revoked")


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(client, sign_in, engine):
    sign_in()
    from tests.console.conftest import new_form

    form = new_form(client)
    del form["csrf_token"]
    response = client.post("/console/triggers/new", data=form)
    assert response.status_code == 400
    assert "This form expired or was not sent from the console" in response.get_data(True)
    wrong = client.post("/console/triggers/new", data={**form, "csrf_token": "forged"})
    assert wrong.status_code == 400
    with db.session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Trigger)) == 0


def test_the_json_api_needs_no_csrf_token(client, make_key) -> None:
    key = make_key("acme").key
    response = client.post(
        "/api/v1/triggers",
        json={"name": "n", "cron": "* * * * *", "action": {"type": "task", "name": "echo"}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.get_json()


def test_signing_in_without_the_csrf_token_is_refused(client, make_key) -> None:
    response = client.post("/console/", data={"key": make_key("acme").key})
    assert response.status_code == 400
    assert "Set-Cookie" not in response.headers or "key_id" not in response.headers["Set-Cookie"]


def test_console_pages_cannot_be_framed_and_load_only_their_own_scripts(client) -> None:
    response = client.get("/console/")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_an_expired_session_opening_the_console_root_is_told_why(client, sign_in, clock) -> None:
    sign_in()
    clock.advance(hours=13)
    response = client.get("/console/")
    assert response.headers["Location"].startswith("/console/?reason=expired")
    assert "Your session expired." in client.get(response.headers["Location"]).text
