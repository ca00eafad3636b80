"""POST /triggers: success, every validation error (422 naming fields, nothing written),
400 for bodies that are not JSON objects, 413 for oversized ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.api.conftest import ECHO, assert_error, iso, trigger_body

Z_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_it_creates_a_cron_trigger_with_its_next_run(acme, services, clock):
    services.clock = clock.now
    clock.set(datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
    response = acme.post(
        "/triggers", json=trigger_body(cron="30 2 * * *", timezone="America/New_York")
    )

    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/triggers/{body['id']}"
    assert response.headers["ETag"] == '"1"'
    assert body["tenant_id"] == "acme"
    assert body["cron"] == "30 2 * * *"
    assert body["timezone"] == "America/New_York"
    assert body["enabled"] is True and body["version"] == 1 and body["last_run"] is None
    assert body["schedule_description"]
    assert Z_TIMESTAMP.match(body["next_run_at"]) and Z_TIMESTAMP.match(body["created_at"])
    assert body["next_run_at"] == "2026-03-08T07:00:00Z"  # 02:30 does not exist that day
    assert set(body) == {
        "id", "tenant_id", "name", "description", "cron", "timezone", "run_at", "start_at",
        "end_at", "enabled", "action", "payload", "overlap_policy", "catchup_policy",
        "catchup_window_seconds", "max_attempts", "retry_backoff_seconds", "timeout_seconds",
        "next_run_at", "schedule_description", "last_run", "version", "created_at", "updated_at",
        "interval_seconds", "anchor_at", "jitter_seconds", "next_fire_at", "paused_note",
        "paused_at", "paused_by", "run_as", "created_by", "updated_by",
    }  # fmt: skip
    assert acme.get(f"/triggers/{body['id']}").get_json() == body


def test_it_applies_the_documented_defaults(acme):
    body = acme.create()

    assert body["timezone"] == "UTC" and body["description"] == "" and body["payload"] == {}
    assert (body["overlap_policy"], body["catchup_policy"]) == ("allow", "latest")
    assert (body["catchup_window_seconds"], body["max_attempts"]) == (3600, 3)
    assert (body["retry_backoff_seconds"], body["timeout_seconds"]) == (10, 60)


def test_it_creates_a_one_time_trigger_in_utc_with_z(acme):
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    offset = run_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Kolkata")).isoformat()

    body = acme.create(cron=None, run_at=offset)

    assert body["cron"] is None
    assert body["run_at"] == iso(run_at) and body["next_run_at"] == iso(run_at)
    assert body["schedule_description"].startswith("Once at")


def test_a_disabled_trigger_has_no_next_run(acme):
    assert acme.create(enabled=False)["next_run_at"] is None


def test_a_webhook_trigger_keeps_its_action(acme):
    action = {"type": "webhook", "url": "https://example.com/hook", "method": "POST"}
    assert acme.create(action=action, payload={"a": [1, 2]})["action"] == action


DROP = object()  # remove the field from the body
SOON = iso(datetime.now(UTC) + timedelta(days=1))
INVALID = [
    ("bad cron", {"cron": "61 * * * *"}, {"cron"}),
    ("six-field cron", {"cron": "* * * * * *"}, {"cron"}),
    ("unknown time zone", {"timezone": "Mars/Olympus"}, {"timezone"}),
    ("both cron and run_at", {"run_at": SOON}, {"cron", "run_at"}),
    ("no schedule", {"cron": DROP}, {"cron", "run_at", "interval_seconds"}),
    ("naive run_at", {"cron": DROP, "run_at": "2030-01-01T00:00:00"}, {"run_at"}),
    ("run_at in the past", {"cron": DROP, "run_at": "2020-01-01T00:00:00Z"}, {"run_at"}),
    ("end before start", {"start_at": SOON, "end_at": SOON}, {"end_at"}),
    ("unknown handler", {"action": {"type": "task", "name": "nope"}}, {"action.name"}),
    (
        "non-http webhook",
        {"action": {"type": "webhook", "url": "ftp://example.com/x"}},
        {"action.url"},
    ),
    ("unknown action type", {"action": {"type": "email"}}, {"action.type"}),
    ("max_attempts 0", {"max_attempts": 0}, {"max_attempts"}),
    ("max_attempts 21", {"max_attempts": 21}, {"max_attempts"}),
    ("max_attempts as text", {"max_attempts": "3"}, {"max_attempts"}),
    ("empty name", {"name": ""}, {"name"}),
    ("long name", {"name": "x" * 201}, {"name"}),
    ("missing name", {"name": DROP}, {"name"}),
    ("null name", {"name": None}, {"name"}),
    (
        "null cron and run_at",
        {"cron": None, "run_at": None},
        {"cron", "run_at", "interval_seconds"},
    ),
    ("unknown field", {"colour": "red"}, {"colour"}),
    ("read-only field", {"version": 3}, {"version"}),
    ("enabled as 1", {"enabled": 1}, {"enabled"}),
    ("payload not an object", {"payload": [1]}, {"payload"}),
    ("bad policy", {"overlap_policy": "queue"}, {"overlap_policy"}),
]


@pytest.mark.parametrize(("case", "change", "fields"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_input_is_422_naming_the_fields_and_writes_nothing(
    acme, snapshot, case, change, fields
):
    before = snapshot()
    body = {k: v for k, v in trigger_body(**change).items() if v is not DROP}

    error = assert_error(acme.post("/triggers", json=body), 422, "validation_failed")

    assert set(error["fields"]) == fields, error
    assert snapshot() == before


def test_every_bad_field_is_named_at_once(acme, snapshot):
    before = snapshot()
    body = {
        "name": "",
        "cron": "nope",
        "timezone": "Nowhere/Town",
        "max_attempts": 99,
        "action": {"type": "webhook", "url": "file:///etc/passwd"},
        "extra": 1,
    }

    error = assert_error(acme.post("/triggers", json=body), 422)

    assert {"name", "cron", "timezone", "max_attempts", "action.url", "extra"} <= set(
        error["fields"]
    )
    assert snapshot() == before


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ('{"name": "x"}', "text/plain"),
        ("[1, 2]", "application/json"),
        ('"text"', "application/json"),
        ("", "application/json"),
    ],
    ids=["malformed", "wrong content type", "array", "string", "empty"],
)
def test_a_body_that_is_not_a_json_object_is_400(acme, snapshot, data, content_type):
    before = snapshot()

    response = acme.post("/triggers", data=data, headers={"Content-Type": content_type})

    assert_error(response, 400, "bad_request")
    assert snapshot() == before


def test_a_payload_over_64_kib_is_413(acme, snapshot):
    before = snapshot()

    response = acme.post("/triggers", json=trigger_body(payload={"blob": "x" * (64 * 1024)}))

    assert_error(response, 413, "payload_too_large")
    assert snapshot() == before


def test_a_body_over_the_request_limit_is_413_before_parsing(acme, snapshot):
    before = snapshot()
    huge = '{"name": "' + "x" * (200 * 1024) + '"}'

    response = acme.post("/triggers", data=huge, headers={"Content-Type": "application/json"})

    assert_error(response, 413, "payload_too_large")
    assert snapshot() == before


def test_a_payload_just_under_the_limit_is_accepted(acme):
    body = acme.create(payload={"blob": "x" * (64 * 1024 - 20)})
    assert len(body["payload"]["blob"]) == 64 * 1024 - 20


def test_the_echo_action_is_valid(acme):
    assert acme.create(action=ECHO)["action"] == ECHO
