"""Schedule previews: a saved trigger's next fires and an unsaved schedule's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.api.conftest import assert_error, iso


def test_preview_of_an_unsaved_schedule_across_spring_forward(acme):
    body = {
        "cron": "30 2 * * *",
        "timezone": "America/New_York",
        "after": "2026-03-06T12:00:00Z",
        "count": 3,
    }

    response = acme.post("/schedules/preview", json=body)

    assert response.status_code == 200
    preview = response.get_json()
    assert "America/New_York" in preview["description"]
    assert preview["fires"] == [
        {"utc": "2026-03-07T07:30:00Z", "local": "2026-03-07T02:30:00-05:00"},
        {"utc": "2026-03-08T07:00:00Z", "local": "2026-03-08T03:00:00-04:00"},  # the gap
        {"utc": "2026-03-09T06:30:00Z", "local": "2026-03-09T02:30:00-04:00"},
    ]


def test_preview_defaults_to_ten_fires_after_now(acme, services, clock):
    services.clock = clock.now
    clock.set(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))  # a fire instant: strictly after it
    fires = acme.post("/schedules/preview", json={"cron": "@hourly"}).get_json()["fires"]
    assert [f["utc"] for f in fires] == [f"2026-01-05T{h}:00:00Z" for h in range(13, 23)]


def test_preview_of_a_one_time_schedule(acme):
    run_at = "2030-05-01T10:00:00+02:00"
    preview = acme.post(
        "/schedules/preview", json={"run_at": run_at, "timezone": "Europe/Paris"}
    ).get_json()
    assert preview["fires"] == [{"utc": "2030-05-01T08:00:00Z", "local": run_at}]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"cron": "* * *"}, {"cron"}),
        ({"cron": "@daily", "count": 0}, {"count"}),
        ({"cron": "@daily", "count": 101}, {"count"}),
        ({"cron": "@daily", "timezone": "Nowhere"}, {"timezone"}),
        ({}, {"cron", "run_at", "interval_seconds"}),
        ({"cron": "@daily", "run_at": "2030-01-01T00:00:00Z"}, {"cron", "run_at"}),
        ({"cron": "@daily", "after": "2030-01-01T00:00:00"}, {"after"}),
        ({"cron": "@daily", "bogus": 1}, {"bogus"}),
    ],
)
def test_preview_rejects_bad_input(acme, body, fields):
    error = assert_error(acme.post("/schedules/preview", json=body), 422)
    assert set(error["fields"]) == fields


def test_preview_of_a_saved_trigger_respects_its_window(acme):
    start = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    trigger = acme.create(
        cron="0 * * * *", start_at=iso(start), end_at=iso(start + timedelta(hours=2))
    )

    fires = acme.get(f"/triggers/{trigger['id']}/preview?count=5").get_json()["fires"]

    assert [f["utc"] for f in fires] == [
        "2030-01-01T00:00:00Z",
        "2030-01-01T01:00:00Z",
        "2030-01-01T02:00:00Z",
    ]


def test_preview_of_a_saved_trigger_with_count_and_after(acme):
    trigger = acme.create(cron="0 12 * * *", timezone="Asia/Kolkata")
    preview = acme.get(
        f"/triggers/{trigger['id']}/preview?count=2&after=2030-01-01T00:00:00Z"
    ).get_json()
    assert preview["fires"] == [
        {"utc": "2030-01-01T06:30:00Z", "local": "2030-01-01T12:00:00+05:30"},
        {"utc": "2030-01-02T06:30:00Z", "local": "2030-01-02T12:00:00+05:30"},
    ]


@pytest.mark.parametrize("query", ["count=0", "count=101", "count=x", "after=yesterday"])
def test_preview_of_a_saved_trigger_rejects_bad_query(acme, query):
    trigger = acme.create()
    error = assert_error(acme.get(f"/triggers/{trigger['id']}/preview?{query}"), 422)
    assert set(error["fields"]) == {query.split("=")[0]}
