"""Schedule engine speed: `python -m bench.schedule_bench [--repeat N]`.

Times 100,000 next-fire instants (target: under 3 s, issue 3) in the shapes the product
asks for them, best of N runs, and prints one line per shape plus the headline figure:

- `bulk`: `next_fires(count=100_000)` for one expression and zone (a preview taken far);
- `mixed`: 10,000 `next_fires(count=10)` calls over 8 expressions x 8 zones at 10,000
  different instants (previews and catch-up enumeration);
- `cold next_fire`: 100,000 `next_fire` calls, each with a new `after` (no memo hit);
- `dispatcher`: 100,000 `next_fire` calls for 5 expressions sharing one `after` (a tick
  advancing 100,000 triggers; the memo answers almost all of them).
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
    return lambda: len(schedule.next_fires(cron, zone, AFTER, N))


def mixed() -> int:
    pairs = itertools.cycle(itertools.product(EXPRESSIONS, ZONES))
    total = 0
    for number, (cron, zone) in zip(range(N // 10), pairs, strict=False):
        total += len(schedule.next_fires(cron, zone, AFTER + timedelta(seconds=97 * number), 10))
    return total


def cold_next_fire() -> int:
    for number in range(N):
        schedule.next_fire("*/5 * * * *", "America/New_York", AFTER + timedelta(seconds=number))
    return N


def dispatcher() -> int:
    for number in range(N):
        schedule.next_fire(EXPRESSIONS[number % 5], "Europe/London", AFTER)
    return N


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
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"shapes": figures, "worst_per_100k": worst}, fh)


if __name__ == "__main__":
    main()
