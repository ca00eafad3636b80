"""The order the suite runs in under `--dist worksteal`: the long tests spread over the workers.

pytest-xdist's worksteal scheduler gives each of W workers a contiguous slice of the
collection at the start (the first len // W items, then a third of the rest, ...), and a
worker that runs out takes the tail of the longest queue left. The long tests (end to end,
real workers, gunicorn) are a handful of neighbours in the collection, so they used to land
in one worker's slice and run one after the other there: that worker finished a minute after
the others. Dealt round robin to the front of every slice, longest first, they start at
once on every worker, and what is short is left to be stolen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

# The markers of a long test; the first marks the longest (minutes of processes and pip).
LONG = ("e2e", "slow")
# Long, but sharing a module's stack and browser: kept together, in one worker.
TOGETHER = "browser"


def slice_sizes(count: int, workers: int) -> list[int]:
    """The sizes of the slices worksteal hands out first (xdist's check_schedule)."""
    sizes = []
    for remaining in range(workers, 0, -1):
        sizes.append(count // remaining)
        count -= sizes[-1]
    return sizes


def deal(items: Sequence[T], workers: int, weight: Callable[[T], int]) -> list[T]:
    """`items` reordered so that those of weight > 0 open the workers' slices, heaviest
    first, dealt round robin; the rest keep their order and fill each slice to its size."""
    heavy = sorted((i for i in items if weight(i) > 0), key=weight, reverse=True)
    light = [i for i in items if weight(i) <= 0]
    if workers < 2 or not heavy:
        return list(items)
    hands: list[list[T]] = [[] for _ in range(workers)]
    for n, item in enumerate(heavy):
        hands[n % workers].append(item)
    ordered: list[T] = []
    taken = 0
    sizes = slice_sizes(len(items), workers)
    for size, hand in zip(sizes, hands, strict=True):
        # A slice smaller than its hand (a tiny run) passes the extra on to the next one.
        fill = max(0, size - len(hand))
        ordered += hand + light[taken : taken + fill]
        taken += fill
    return ordered + light[taken:]


def weight_of(marker_names: set[str]) -> int:
    """2 for an end-to-end test, 1 for another long one, 0 for the rest (and for the
    browser tests, which share their module's stack)."""
    if TOGETHER in marker_names:
        return 0
    for rank, name in enumerate(LONG):
        if name in marker_names:
            return len(LONG) - rank
    return 0
