"""The Redis concurrency semaphore: at most N running runs overall and M per tenant.

Each slot is a lease: a member of a sorted set whose score is its expiry time (Unix
seconds). A holder renews its lease from the run's heartbeat; a holder that dies (SIGKILL,
lost host) stops renewing and its slot comes back once the lease expires, with no cleanup
process. Acquiring takes a global and a tenant slot in one Lua script, so the two counts never
disagree and two workers cannot both take the last slot.

Why the per-tenant cap is the fairness guarantee: with `max_per_tenant < max_running`, one
tenant can hold at most `max_per_tenant` slots, so `max_running - max_per_tenant` slots always
remain for the others however many runs the big tenant has queued.

Times are passed in (`now`), as everywhere in app/. Leases are compared across workers, so the
workers' clocks must agree (NTP): a skew of s seconds shortens a lease by s, which renewal
every `heartbeat_seconds` (much less than the lease) absorbs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import redis

# The hash tag `{...}` puts both keys of one script call in the same Redis Cluster slot.
PREFIX = "{sched-slots}"

# KEYS: global, tenant. ARGV: now, expires_at, member, max_running, max_per_tenant, ttl_ms.
# Returns 0 when the slot was taken, 1 when the global limit is reached, 2 the tenant's.
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 0
"""

# KEYS: global, tenant. ARGV: expires_at, member, ttl_ms. Returns 1 when the lease was still
# held (and is extended), 0 when it had expired and been pruned: it is not re-added, because
# re-adding could exceed the limit.
_RENEW = """
local held = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not held then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'XX', ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""


@dataclass(frozen=True)
class Lease:
    """A slot held by one execution of one run (its member is unique to that execution)."""

    tenant_id: str
    member: str
    expires_at: float


@dataclass(frozen=True)
class Denied:
    """No slot: `scope` is 'global' or 'tenant', the limit that was reached."""

    scope: str


class Limiter:
    """Global and per-tenant concurrency slots backed by Redis sorted sets."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        max_running: int,
        max_per_tenant: int,
        lease_seconds: float,
        prefix: str = PREFIX,
    ) -> None:
        self.client = client
        self.max_running = max_running
        self.max_per_tenant = max_per_tenant
        self.lease_seconds = lease_seconds
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    def global_key(self) -> str:
        return f"{self.prefix}:global"

    def tenant_key(self, tenant_id: str) -> str:
        return f"{self.prefix}:tenant:{tenant_id}"

    def acquire(self, tenant_id: str, run_id: str, *, now: datetime) -> Lease | Denied:
        """Take one global and one tenant slot for `run_id`; return the Lease, or Denied."""
        # A fresh suffix per execution: a redelivered run never mistakes a dead worker's
        # lease for its own, and a release only ever removes the releaser's own slot.
        member = f"{run_id}:{uuid.uuid4().hex[:12]}"
        expires_at = now.timestamp() + self.lease_seconds
        code = self._acquire(
            keys=[self.global_key(), self.tenant_key(tenant_id)],
            args=[
                now.timestamp(),
                expires_at,
                member,
                self.max_running,
                self.max_per_tenant,
                self._ttl_ms(),
            ],
        )
        if code == 0:
            return Lease(tenant_id=tenant_id, member=member, expires_at=expires_at)
        return Denied(scope="global" if code == 1 else "tenant")

    def renew(self, lease: Lease, *, now: datetime) -> bool:
        """Extend a lease by `lease_seconds` from `now`; False when it had already expired."""
        held = self._renew(
            keys=[self.global_key(), self.tenant_key(lease.tenant_id)],
            args=[now.timestamp() + self.lease_seconds, lease.member, self._ttl_ms()],
        )
        return bool(held)

    def release(self, lease: Lease) -> None:
        """Give the slot back (a no-op when it has already expired)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(self.global_key(), lease.member)
            pipe.zrem(self.tenant_key(lease.tenant_id), lease.member)
            pipe.execute()

    def in_use(self, *, now: datetime, tenant_id: str | None = None) -> int:
        """How many unexpired slots are held, overall or by one tenant (metrics, tests)."""
        key = self.global_key() if tenant_id is None else self.tenant_key(tenant_id)
        return int(self.client.zcount(key, f"({now.timestamp()}", "+inf"))

    def _ttl_ms(self) -> int:
        # Keys of idle tenants vanish on their own once every lease in them has expired.
        return int(self.lease_seconds * 2 * 1000)
