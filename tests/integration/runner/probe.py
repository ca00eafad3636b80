"""`test.probe`, a handler for tests in real worker processes (loaded via HANDLER_MODULES).

It sleeps `payload.sleep` seconds and records in Redis how many runs execute at once, in
all and per tenant (`probe:max`, `probe:max:<tenant>`), and when each run finished
(`probe:done:<tenant>`).
"""

from __future__ import annotations

import time
from functools import cache

import redis

from app import config
from app.actions import registry

# KEYS: current counter, high-water mark. Returns the new current value.
_ENTER = """
local c = redis.call('INCR', KEYS[1])
if c > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], c) end
return c
"""


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(config.get_settings().redis_url)


@registry.handler("test.probe")
def probe(ctx: registry.RunContext) -> None:
    client = _client()
    enter = client.register_script(_ENTER)
    keys = [
        ("probe:cur", "probe:max"),
        (f"probe:cur:{ctx.tenant_id}", f"probe:max:{ctx.tenant_id}"),
    ]
    for current, high in keys:
        enter(keys=[current, high])
    try:
        time.sleep(ctx.payload["sleep"])
    finally:
        client.rpush(f"probe:done:{ctx.tenant_id}", time.time())
        for current, _high in keys:
            client.decr(current)
