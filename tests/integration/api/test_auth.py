"""API keys: 401 without a hint, tenant isolation (another tenant's ids are 404), admin reach,
revocation, request ids and request logs."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime

import pytest

from app import db, keys
from tests.integration.api.conftest import Caller, assert_error

ENDPOINTS = [
    ("GET", "/triggers"),
    ("POST", "/triggers"),
    ("GET", "/triggers/{trigger}"),
    ("PATCH", "/triggers/{trigger}"),
    ("DELETE", "/triggers/{trigger}"),
    ("POST", "/triggers/{trigger}/run"),
    ("GET", "/triggers/{trigger}/preview"),
    ("GET", "/triggers/{trigger}/runs"),
    ("GET", "/runs/{run}"),
    ("POST", "/runs/{run}/cancel"),
    ("POST", "/schedules/preview"),
    ("GET", "/admin/scheduler"),
]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer tsk_not-a-real-key-but-well-formed-enough-xxxxxxxxxxxxx",
        "Bearer garbage",
        "Token tsk_x",
    ],
)
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_missing_or_bad_keys_get_the_same_401(client, snapshot, authorization, method, path):
    before = snapshot()
    headers = {} if authorization is None else {"Authorization": authorization}
    url = "/api/v1" + path.format(trigger=uuid.uuid4(), run=uuid.uuid4())

    response = client.open(url, method=method, headers=headers, json={})

    error = assert_error(response, 401, "unauthorized")
    assert error["message"] == "A valid API key is required."
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert snapshot() == before


def test_a_revoked_key_gets_401_at_once(acme, engine):
    assert acme.get("/triggers").status_code == 200
    with db.session_scope(engine) as session:
        keys.revoke(session, acme.key[: keys.PREFIX_LENGTH], now=datetime.now(UTC))

    assert_error(acme.get("/triggers"), 401, "unauthorized")


def test_keys_are_stored_only_as_hashes(acme, engine):
    from sqlalchemy import text

    with engine.connect() as conn:
        row = conn.execute(text("SELECT prefix, key_hash FROM api_keys")).one()
    assert acme.key not in (row.prefix, row.key_hash)
    assert row.key_hash == keys.hash_key(acme.key) and acme.key.startswith(row.prefix)
    assert len(acme.key) >= len("tsk_") + 43  # 32 random bytes, base64url


@pytest.mark.parametrize(
    ("method", "path"), [e for e in ENDPOINTS if "{" in e[1]], ids=lambda v: str(v)
)
def test_another_tenants_trigger_or_run_is_404(acme, globex, add_run, snapshot, method, path):
    trigger = acme.create()
    run_id = add_run(trigger)
    before = snapshot()

    response = globex.request(
        method,
        path.format(trigger=trigger["id"], run=run_id),
        json={"name": "stolen"} if method == "PATCH" else None,
    )

    assert_error(response, 404, "not_found")
    assert snapshot() == before


def test_lists_show_only_the_callers_tenant(acme, globex):
    mine = acme.create()["id"]
    globex.create()

    assert [t["id"] for t in acme.get("/triggers").get_json()["items"]] == [mine]


def test_an_admin_key_sees_every_tenant(acme, globex, admin, add_run):
    a, g = acme.create(), globex.create()
    run_id = add_run(g)

    listed = {t["id"] for t in admin.get("/triggers").get_json()["items"]}
    assert listed == {a["id"], g["id"]}
    assert admin.get(f"/triggers/{g['id']}").status_code == 200
    assert admin.get(f"/runs/{run_id}").status_code == 200
    assert admin.patch(f"/triggers/{a['id']}", json={"name": "by ops"}).status_code == 200


def test_a_tenant_key_cannot_reach_admin_endpoints(acme, admin):
    assert_error(acme.get("/admin/scheduler"), 404)
    assert admin.get("/admin/scheduler").status_code == 200


def test_every_response_carries_a_request_id(acme, anonymous):
    generated = acme.get("/triggers").headers["X-Request-Id"]
    assert len(generated) == 32

    echoed = acme.get("/triggers", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"]
    assert echoed == "abc-123"

    unsafe = anonymous.get("/triggers", headers={"X-Request-Id": "x" * 500 + "<script>"})
    assert unsafe.status_code == 401 and unsafe.headers["X-Request-Id"] != "x" * 500


def test_every_log_line_of_a_request_carries_its_id(acme, caplog):
    from app import logs

    captured: list[dict] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(json.loads(logs.JsonFormatter().format(record)))

    handler = Capture()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        trigger = acme.create()
        acme.patch(f"/triggers/{trigger['id']}", json={"enabled": False},
                   headers={"X-Request-Id": "req-42"})  # fmt: skip
    finally:
        logging.getLogger().removeHandler(handler)

    lines = [line for line in captured if line.get("request_id") == "req-42"]
    request_lines = [line for line in lines if line.get("event") == "http_request"]
    assert len(request_lines) == 1
    assert request_lines[0]["status"] == 200 and request_lines[0]["method"] == "PATCH"
    assert request_lines[0]["tenant_id"] == "acme"
    other = [line for line in captured if line.get("event") == "http_request"]
    assert all("request_id" in line for line in other)


def test_an_unexpected_error_is_a_generic_500_with_details_only_in_the_log(acme, services, caplog):
    def boom() -> datetime:
        raise RuntimeError("postgresql://user:secret@db/prod exploded")

    trigger = acme.create()
    services.clock = boom

    with caplog.at_level(logging.ERROR):
        response = acme.patch(f"/triggers/{trigger['id']}", json={"name": "x"})

    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert error["message"] == "Internal server error."
    assert any("exploded" in (r.exc_text or str(r.exc_info)) for r in caplog.records)


def test_unknown_routes_and_methods_use_the_envelope(acme):
    assert_error(acme.get("/nothing-here"), 404, "not_found")
    response = acme.request("PUT", "/triggers")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_a_key_of_an_unknown_scheme_is_not_looked_up(anonymous):
    assert_error(Caller(anonymous.client, "sk_live_whatever").get("/triggers"), 401)
