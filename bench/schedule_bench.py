"""Schedule engine speed: `python -m bench.schedule_bench [--repeat N]`.

Times 100,000 next-fire instants (target: under 3 s, issue 3) in the shapes the product
asks for them, best of N runs, and prints one line per shape plus the headline figure:

- `bulk`: `next_fires(count=100_000)` for one expression and zone (a preview taken far);
- `mixed`: 10,000 `next_fires(count=10)` calls over 8 expressions x 8 zones at 10,000
  different instants (previews and catch-up enumeration);
- `cold next_fire`: 100,000 `next_fire` calls, each with a new `after` (no memo hit);
- `dispatcher`: 100,000 `next_fire` calls for 5 expressions sharing one `after` (a tick
  advancing 100,000 triggers; the memo answers almost all of them);
- `interval` (docs/design.md section 11): 100,000 fires of one interval trigger (a preview taken
  far), and 100,000 `fire_after` calls each with a new `after` (a tick advancing 100,000
  interval triggers with distinct anchors, target under 1 s);
- `jittered`: 100,000 (fire, due) pairs for jittered cron and interval triggers with
  distinct ids (the dispatcher's advance of 100,000 jittered triggers: no memo helps, each
  trigger's delays are its own), target under 1 s;
- `extended cron`: 100,000 fires of `L`, `LW`, `#` and `DL` expressions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from app import schedule
from app.schedule import spec
from app.schedule import spec as schedule_spec

N = 100_000
AFTER = datetime(2026, 3, 1, 12, 0, 17, tzinfo=UTC)
EXPRESSIONS = (
    "* * * * *",
    "*/5 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "*/15 9-17 * * MON-FRI",
    "0 0 1 * *",
    "0 0 */2 * MON",
    "@daily",
)
ZONES = (
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
    "Pacific/Chatham",
)


def best_of(repeat: int, work: Callable[[], int]) -> tuple[float, int]:
    """(best wall time in seconds, instants produced) over `repeat` runs of `work`."""
    best, produced = float("inf"), 0
    for _ in range(repeat):
        spec.next_fire.cache_clear()
        started = time.perf_counter()
        produced = work()
        best = min(best, time.perf_counter() - started)
    return best, produced


def bulk(cron: str, zone: str) -> Callable[[], int]:
    return lambda: len(schedule_spec.next_fires(cron, zone, AFTER, N))


def mixed() -> int:
    pairs = itertools.cycle(itertools.product(EXPRESSIONS, ZONES))
    total = 0
    for number, (cron, zone) in zip(range(N // 10), pairs, strict=False):
        total += len(
            schedule_spec.next_fires(cron, zone, AFTER + timedelta(seconds=97 * number), 10)
        )
    return total


def cold_next_fire() -> int:
    for number in range(N):
        schedule_spec.next_fire(
            "*/5 * * * *", "America/New_York", AFTER + timedelta(seconds=number)
        )
    return N


def dispatcher() -> int:
    for number in range(N):
        schedule_spec.next_fire(EXPRESSIONS[number % 5], "Europe/London", AFTER)
    return N


def interval_bulk() -> int:
    hourly = schedule.TriggerSpec(cron=None, interval_seconds=5400)
    return len(schedule_spec.trigger_fires(hourly, AFTER, N))


INTERVAL_SPECS = [
    schedule.TriggerSpec(cron=None, interval_seconds=60 * (1 + n % 120),
                         anchor_at=AFTER - timedelta(seconds=7 * n))
    for n in range(1000)
]  # fmt: skip


def interval_advance() -> int:
    for number in range(N):
        schedule_spec.fire_after(INTERVAL_SPECS[number % 1000], AFTER + timedelta(seconds=number))
    return N


JITTERED = [
    schedule.TriggerSpec(cron="0 * * * *", jitter_seconds=900, jitter_key=f"trigger-{n}")
    if n % 2
    else schedule.TriggerSpec(cron=None, interval_seconds=3600, jitter_seconds=900,
                              jitter_key=f"trigger-{n}")
    for n in range(N)
]  # fmt: skip


def jittered_advance() -> int:
    for trigger in JITTERED:
        fire = schedule_spec.fire_after(trigger, AFTER)
        schedule.due_at(trigger, fire)
    return N


def extended_bulk() -> int:
    total = 0
    for cron in ("0 9 L * *", "30 8 LW * *", "0 9 * * MON#2", "0 18 * * 5L", "*/10 * L * *"):
        total += len(schedule_spec.next_fires(cron, "America/New_York", AFTER, N // 5))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per shape; the best counts")
    parser.add_argument("--json", help="also write each shape's figures to this file")
    args = parser.parse_args()
    shapes: list[tuple[str, Callable[[], int]]] = [
        ("bulk * * * * * America/New_York", bulk("* * * * *", "America/New_York")),
        (
            "bulk */15 9-17 * * MON-FRI Europe/London",
            bulk("*/15 9-17 * * MON-FRI", "Europe/London"),
        ),
        ("bulk 30 2 * * * America/New_York", bulk("30 2 * * *", "America/New_York")),
        ("mixed 8 expressions x 8 zones", mixed),
        ("cold next_fire", cold_next_fire),
        ("dispatcher next_fire (memoised)", dispatcher),
        ("interval bulk 90 minutes", interval_bulk),
        ("interval fire_after, 1,000 anchors", interval_advance),
        ("jittered cron + interval, 100,000 ids", jittered_advance),
        ("extended cron L LW # DL", extended_bulk),
    ]
    worst = 0.0
    figures = {}
    for name, work in shapes:
        seconds, produced = best_of(args.repeat, work)
        worst = max(worst, seconds * N / produced)
        figures[name] = {
            "seconds": seconds,
            "instants": produced,
            "per_100k": seconds * N / produced,
        }
        print(f"{name:45} {produced:>7} instants {seconds:7.3f} s {produced / seconds:>11,.0f}/s")
    verdict = "OK" if worst < 3 else "OVER TARGET"
    print(
        f"100,000 next-fire instants: at most {worst:.3f} s in any shape (target < 3 s): {verdict}"
    )
    new = max(figures[n]["per_100k"] for n in figures if n.startswith(("interval", "jittered")))
    print(
        f"interval and jittered shapes: at most {new:.3f} s per 100,000 (target < 1 s): "
        f"{'OK' if new < 1 else 'OVER TARGET'}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"shapes": figures, "worst_per_100k": worst}, fh)


if __name__ == "__main__":
    main()
