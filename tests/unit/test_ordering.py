"""The suite's order under worksteal (tests/ordering.py): long tests open every slice."""

from __future__ import annotations

from tests import ordering


def test_slice_sizes_are_xdists_first_hand_out() -> None:
    assert ordering.slice_sizes(1548, 4) == [387, 387, 387, 387]
    assert ordering.slice_sizes(10, 4) == [2, 2, 3, 3]
    assert sum(ordering.slice_sizes(1001, 3)) == 1001


def test_long_tests_open_each_slice_heaviest_first_and_nothing_is_lost() -> None:
    # Ten items; three long ones (weights 2, 1, 1) sit together in what would be one slice.
    weights = {"a": 0, "b": 0, "c": 0, "d": 0, "e": 1, "f": 2, "g": 1, "h": 0, "i": 0, "j": 0}
    ordered = ordering.deal(list(weights), 3, weights.__getitem__)
    assert sorted(ordered) == sorted(weights)
    sizes = ordering.slice_sizes(len(weights), 3)
    starts = [sum(sizes[:k]) for k in range(3)]
    assert [ordered[s] for s in starts] == ["f", "e", "g"]
    light = [i for i in ordered if weights[i] == 0]
    assert light == ["a", "b", "c", "d", "h", "i", "j"], "the rest keep their order"


def test_one_worker_or_no_long_test_keeps_the_collection_order() -> None:
    items = ["a", "b", "c"]
    assert ordering.deal(items, 1, lambda i: 1) == items
    assert ordering.deal(items, 4, lambda i: 0) == items


def test_the_markers_weigh_end_to_end_first() -> None:
    assert ordering.weight_of({"e2e", "slow"}) == 2
    assert ordering.weight_of({"slow"}) == 1
    assert ordering.weight_of({"browser", "e2e", "slow"}) == 0, "one stack for the module"
    assert ordering.weight_of({"parametrize"}) == 0
