"""The echo handler: returns its payload, sleeps and fails on request."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from app.actions import echo, registry
from app.errors import ActionError


def ctx(payload: dict, attempt: int = 1) -> registry.RunContext:
    return registry.RunContext(
        run_id="r",
        trigger_id="t",
        tenant_id="tenant",
        idempotency_key="t:2026-01-05T12:00:00Z",
        scheduled_for=datetime(2026, 1, 5, 12, tzinfo=UTC),
        attempt=attempt,
        payload=payload,
    )


def test_it_returns_its_payload() -> None:
    assert echo.echo(ctx({"a": [1, 2]})) == {"a": [1, 2]}


def test_it_fails_on_the_first_n_attempts_then_succeeds() -> None:
    for attempt in (1, 2):
        with pytest.raises(ActionError, match=f"attempt {attempt} of 2"):
            echo.echo(ctx({"fail_times": 2}, attempt))
    assert echo.echo(ctx({"fail_times": 2}, 3)) == {"fail_times": 2}


def test_it_sleeps_when_asked() -> None:
    started = time.monotonic()
    echo.echo(ctx({"sleep_seconds": 0.2}))
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("value", ["5", True, None, -3])
def test_odd_values_of_its_keys_are_ignored(value: object) -> None:
    started = time.monotonic()
    assert echo.echo(ctx({"sleep_seconds": value, "fail_times": value}))
    assert time.monotonic() - started < 0.1
