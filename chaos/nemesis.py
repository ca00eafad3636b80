"""The nemesis: a fault schedule drawn from a seed, and the thread that carries it out.

`plan` is pure (seed and timings in, faults out), so a seed printed in a report replays the
same schedule. Each worker has its own sequence of faults (one at a time per worker, in a
shuffled order each round); the beat host's partitions and the server faults fall anywhere,
so faults on different hosts overlap: several at once, while the load goes on.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

WORKER_FAULTS = ("partition_pg", "partition_broker", "freeze", "lossy", "skew")
WORKERS = ("w1", "w2")


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    start: float  # seconds after the load started
    duration: float  # 0 for an instant fault
    skew_seconds: int = 0


@dataclass(frozen=True)
class Timings:
    fault_start: float
    fault_end: float
    burst_at: float
    lease_seconds: int
    heartbeat_timeout_seconds: int
    tick_seconds: int
    short: bool = False


def plan(seed: int, timings: Timings) -> list[Fault]:
    """Every fault of the run, by start time.

    1. Per worker, faults back to back with gaps, kinds shuffled each round, until the window
       ends; each worker gets every kind at least once when the window allows it.
    2. The beat host partitioned (from PostgreSQL and the broker) for 3-6 ticks, once per
       two minutes of window, at random.
    3. At the noisy tenant's burst, the backends killed and the broker restarted (and once
       more each, at random, in a long run).
    """
    rng = random.Random(seed)
    t = timings
    faults: list[Fault] = []
    freeze = max(t.lease_seconds, t.heartbeat_timeout_seconds) + 2 * t.tick_seconds
    kinds = list(WORKER_FAULTS)
    rng.shuffle(kinds)
    # The first round splits the five kinds over both workers so a short window holds all.
    queues = {w: [k for i, k in enumerate(kinds) if i % 2 == n] for n, w in enumerate(WORKERS)}
    for worker in WORKERS:
        cursor = t.fault_start + rng.uniform(0, 5)
        while True:
            if not queues[worker]:
                queues[worker] = rng.sample(WORKER_FAULTS, len(WORKER_FAULTS))
            kind = queues[worker].pop(0)
            if kind == "freeze":
                duration = freeze + rng.uniform(2, 6)
            elif t.short:
                duration = rng.uniform(10, 16)
            else:
                duration = rng.uniform(20, 45)
            if cursor + duration > t.fault_end:
                break
            skew = rng.choice((-600, 600)) if kind == "skew" else 0
            faults.append(Fault(kind, worker, round(cursor, 1), round(duration, 1), skew))
            cursor += duration + (rng.uniform(2, 6) if t.short else rng.uniform(5, 25))
    span = t.fault_end - t.fault_start
    beat_partitions = max(1, int(span // 120))
    for _ in range(beat_partitions):
        duration = t.tick_seconds * rng.uniform(3, 6)
        start = rng.uniform(t.fault_start, max(t.fault_start, t.fault_end - duration))
        faults.append(Fault("partition_beat", "beat", round(start, 1), round(duration, 1)))
    faults.append(
        Fault("kill_pg_connections", "postgres", round(t.burst_at + rng.uniform(1, 4), 1), 0)
    )
    faults.append(Fault("broker_restart", "redis", round(t.burst_at + rng.uniform(4, 8), 1), 0))
    if not t.short:
        for kind, target in (("kill_pg_connections", "postgres"), ("broker_restart", "redis")):
            at = rng.uniform(t.fault_start, t.fault_end)
            faults.append(Fault(kind, target, round(at, 1), 0))
    return sorted(faults, key=lambda f: (f.start, f.kind, f.target))


@dataclass
class Applied:
    """A fault as it happened (wall-clock seconds since the epoch), for the report."""

    fault: Fault
    began: float
    ended: float | None = None
    how: str = ""
    notes: list[str] = field(default_factory=list)


class Nemesis(threading.Thread):
    """Carries out a plan: `apply(fault) -> how` and `revert(fault)`, at the planned times
    from `t0` (time.time()). `stop()` reverts whatever is active and returns."""

    def __init__(
        self,
        faults: list[Fault],
        t0: float,
        apply: Callable[[Fault], str],
        revert: Callable[[Fault], None],
    ) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.faults, self.t0, self._apply, self._revert = faults, t0, apply, revert
        self.applied: list[Applied] = []
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        events: list[tuple[float, int, Fault]] = []
        for fault in self.faults:
            events.append((fault.start, 1, fault))
            if fault.duration:
                events.append((fault.start + fault.duration, 0, fault))
        events.sort(key=lambda e: (e[0], e[1]))
        active: dict[Fault, Applied] = {}
        for at, begin, fault in events:
            if self._stop_event.wait(max(0.0, self.t0 + at - time.time())):
                break
            try:
                if begin:
                    record = Applied(fault, began=time.time())
                    record.how = self._apply(fault)
                    if fault.duration:
                        active[fault] = record
                    else:
                        record.ended = time.time()
                    self.applied.append(record)
                    logger.info("fault %s on %s: %s", fault.kind, fault.target, record.how)
                elif fault in active:
                    self._revert(fault)
                    active.pop(fault).ended = time.time()
                    logger.info("fault %s on %s healed", fault.kind, fault.target)
            except Exception as exc:  # a fault that failed to apply is reported, not hidden
                self.errors.append(f"{fault.kind} on {fault.target}: {exc}")
                logger.exception("fault %s on %s failed", fault.kind, fault.target)
        for fault, record in active.items():
            try:
                self._revert(fault)
            finally:
                record.ended = time.time()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=120)


FREEZE, THAW = signal.SIGSTOP, signal.SIGCONT
