"""The `echo` handler, shipped for demos and tests (docs/design.md section 6). The registry
registers it only in development or with ENABLE_ECHO_HANDLER (app/actions/registry.py).

It returns its payload. Two optional payload keys shape its behaviour:

- `sleep_seconds`: sleep that long first (a slow job; capped at one hour);
- `fail_times`: raise on the first N attempts (a flaky job), using the run's attempt number,
  so a run with `fail_times: 2` and `max_attempts >= 3` fails twice, then succeeds.
"""

from __future__ import annotations

import time
from typing import Any

from app.actions import registry
from app.errors import ActionError

MAX_SLEEP_SECONDS = 3600.0


def echo(ctx: registry.RunContext) -> Any:
    """Return the payload, after the optional sleep and planned failures."""
    payload = ctx.payload
    sleep = _number(payload.get("sleep_seconds"))
    if sleep > 0:
        time.sleep(min(sleep, MAX_SLEEP_SECONDS))
    fail_times = int(_number(payload.get("fail_times")))
    if ctx.attempt <= fail_times:
        raise ActionError(f"echo: planned failure on attempt {ctx.attempt} of {fail_times}")
    return payload


def _number(value: Any) -> float:
    # bool is an int in Python; `true` is not a duration.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0
