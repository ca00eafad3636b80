"""Pure presentation helpers: relative times and fires with daylight-saving changes marked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from web.console import chart, display

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_relative_times_use_the_largest_whole_unit() -> None:
    assert display.relative(NOW + timedelta(hours=3, minutes=59), NOW) == "in 3 h"
    assert display.relative(NOW - timedelta(minutes=5, seconds=10), NOW) == "5 min ago"
    assert display.relative(NOW + timedelta(days=2, hours=1), NOW) == "in 2 d"
    assert display.relative(NOW + timedelta(milliseconds=300), NOW) == "now"
    assert display.relative(None, NOW) == "-"
    assert display.span(0.25) == "250 ms"


def test_fire_rows_mark_the_fire_after_each_offset_change() -> None:
    # 2026-11-01 06:00Z: New York falls back from EDT (-04:00) to EST (-05:00).
    fires = [
        datetime(2026, 10, 31, 5, 30, tzinfo=UTC),  # 01:30 EDT
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, the first 01:30 only
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),  # 01:30 EST
        datetime(2026, 11, 3, 6, 30, tzinfo=UTC),
    ]
    rows = display.fire_rows(fires, "America/New_York")
    assert [row.local.isoformat() for row in rows] == [
        "2026-10-31T01:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]
    assert [row.change for row in rows] == [
        None,
        None,
        "UTC offset -04:00 (EDT) -> -05:00 (EST)",
        None,
    ]


def test_a_zone_without_daylight_saving_marks_nothing() -> None:
    fires = [datetime(2026, m, 1, tzinfo=UTC) for m in range(1, 13)]
    assert all(row.change is None for row in display.fire_rows(fires, "Asia/Tokyo"))


def test_the_chart_escapes_labels_and_draws_both_series() -> None:
    svg = chart.svg(
        [chart.Point("<b>", 1.5, 0.2), chart.Point("2", 0.5, None), chart.Point("3", 2.0, 1.0)]
    )
    assert "<b>" not in svg and "&lt;b&gt;: lag 1 s" in svg
    assert svg.count("<circle") == 3 and svg.count("<rect") == 2
    assert "No finished runs" in chart.svg([chart.Point("x", None, None)])


def test_fire_rows_carry_the_jittered_instant_in_the_zone_when_given() -> None:
    fires = [datetime(2026, 11, 30, 14, 0, tzinfo=UTC), datetime(2026, 12, 1, 14, 0, tzinfo=UTC)]
    rows = display.fire_rows(
        fires, "America/New_York", due=lambda fire: fire + timedelta(seconds=95)
    )
    assert [row.due_local.isoformat() for row in rows] == [
        "2026-11-30T09:01:35-05:00",
        "2026-12-01T09:01:35-05:00",
    ]
    assert all(row.due_local is None for row in display.fire_rows(fires, "UTC"))
