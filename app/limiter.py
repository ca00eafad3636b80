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

# KEYS: the slot sets (global, tenant[, node]). ARGV: now, expires_at, member, ttl_ms, then
# one limit per key. Returns 0 when a slot was taken in every set, else the 1-based index of
# the first set that is full.
_ACQUIRE = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[4 + i]) then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  redis.call('PEXPIRE', key, ARGV[4])
end
return 0
"""

# KEYS: the slot sets, global first. ARGV: expires_at, member, ttl_ms. Returns 1 when the
# lease was still held (and is extended), 0 when it had expired and been pruned: it is not
# re-added, because re-adding could exceed the limit.
_RENEW = """
local held = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not held then return 0 end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', ARGV[1], ARGV[2])
  redis.call('PEXPIRE', key, ARGV[3])
end
return 1
"""

SCOPES = ("global", "tenant", "node")


@dataclass(frozen=True)
class Lease:
    """A slot held by one execution of one run (its member is unique to that execution)."""

    tenant_id: str
    member: str
    expires_at: float
    node: str | None = None


@dataclass(frozen=True)
class Denied:
    """No slot: `scope` is 'global', 'tenant' or 'node', the limit that was reached."""

    scope: str


class Limiter:
    """Global, per-tenant and (optionally) per-worker-node concurrency slots backed by Redis
    sorted sets.

    The node limit keeps a worker from filling every one of its processes with runs: a
    worker that also consumes the dispatch ticks sets it to its concurrency minus one, so a
    tick never waits behind long runs (tasks/runner.py).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        max_running: int,
        max_per_tenant: int,
        lease_seconds: float,
        prefix: str = PREFIX,
        node: str | None = None,
        max_per_node: int | None = None,
    ) -> None:
        self.client = client
        self.max_running = max_running
        self.max_per_tenant = max_per_tenant
        self.lease_seconds = lease_seconds
        self.prefix = prefix
        self.node = node if max_per_node is not None else None
        self.max_per_node = max_per_node
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    def global_key(self) -> str:
        return f"{self.prefix}:global"

    def tenant_key(self, tenant_id: str) -> str:
        return f"{self.prefix}:tenant:{tenant_id}"

    def node_key(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    def _keys(self, tenant_id: str, node: str | None) -> list[str]:
        keys = [self.global_key(), self.tenant_key(tenant_id)]
        return keys + [self.node_key(node)] if node is not None else keys

    def acquire(self, tenant_id: str, run_id: str, *, now: datetime) -> Lease | Denied:
        """Take one global and one tenant slot for `run_id`; return the Lease, or Denied."""
        # A fresh suffix per execution: a redelivered run never mistakes a dead worker's
        # lease for its own, and a release only ever removes the releaser's own slot.
        member = f"{run_id}:{uuid.uuid4().hex[:12]}"
        expires_at = now.timestamp() + self.lease_seconds
        limits = [self.max_running, self.max_per_tenant]
        if self.node is not None:
            limits.append(self.max_per_node)
        code = self._acquire(
            keys=self._keys(tenant_id, self.node),
            args=[now.timestamp(), expires_at, member, self._ttl_ms(), *limits],
        )
        if code == 0:
            return Lease(tenant_id=tenant_id, member=member, expires_at=expires_at,
                         node=self.node)  # fmt: skip
        return Denied(scope=SCOPES[int(code) - 1])

    def renew(self, lease: Lease, *, now: datetime) -> bool:
        """Extend a lease by `lease_seconds` from `now`; False when it had already expired."""
        held = self._renew(
            keys=self._keys(lease.tenant_id, lease.node),
            args=[now.timestamp() + self.lease_seconds, lease.member, self._ttl_ms()],
        )
        return bool(held)

    def release(self, lease: Lease) -> None:
        """Give the slot back (a no-op when it has already expired)."""
        with self.client.pipeline(transaction=True) as pipe:
            for key in self._keys(lease.tenant_id, lease.node):
                pipe.zrem(key, lease.member)
            pipe.execute()

    def in_use(self, *, now: datetime, tenant_id: str | None = None) -> int:
        """How many unexpired slots are held, overall or by one tenant (metrics, tests)."""
        key = self.global_key() if tenant_id is None else self.tenant_key(tenant_id)
        return int(self.client.zcount(key, f"({now.timestamp()}", "+inf"))

    def _ttl_ms(self) -> int:
        # Keys of idle tenants vanish on their own once every lease in them has expired.
        return int(self.lease_seconds * 2 * 1000)
