"""The nemesis's schedule is a pure function of the seed (chaos/nemesis.py), and the receiver's
scripts answer as the workload expects (chaos/receiver.py)."""

from __future__ import annotations

import pytest

from chaos import nemesis, receiver

CI = nemesis.Timings(fault_start=15, fault_end=85, burst_at=42, lease_seconds=10,
                     heartbeat_timeout_seconds=8, tick_seconds=2, short=True)  # fmt: skip
LONG = nemesis.Timings(fault_start=60, fault_end=1110, burst_at=420, lease_seconds=10,
                       heartbeat_timeout_seconds=8, tick_seconds=2)  # fmt: skip
ALL_KINDS = {*nemesis.WORKER_FAULTS, "partition_beat", "kill_pg_connections", "broker_restart"}


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert nemesis.plan(29, CI) == nemesis.plan(29, CI)
    assert nemesis.plan(29, LONG) != nemesis.plan(30, LONG)


@pytest.mark.parametrize("seed", [29, 1, 2, 3, 34823])
def test_the_short_run_has_every_fault_within_its_window(seed: int) -> None:
    faults = nemesis.plan(seed, CI)
    assert {f.kind for f in faults} == ALL_KINDS
    for fault in faults:
        assert CI.fault_start <= fault.start
        assert fault.start + fault.duration <= CI.fault_end


@pytest.mark.parametrize("seed", [29, 7, 34823])
def test_a_worker_has_one_fault_at_a_time(seed: int) -> None:
    for worker in nemesis.WORKERS:
        mine = [f for f in nemesis.plan(seed, LONG) if f.target == worker]
        for before, after in zip(mine, mine[1:], strict=False):
            assert before.start + before.duration <= after.start


def test_a_freeze_outlasts_the_lease_and_the_heartbeat_timeout() -> None:
    freezes = [f for f in nemesis.plan(29, LONG) if f.kind == "freeze"]
    assert freezes
    assert all(
        f.duration > max(LONG.lease_seconds, LONG.heartbeat_timeout_seconds) for f in freezes
    )


def test_a_skew_is_ten_minutes_either_way() -> None:
    skews = [f.skew_seconds for f in nemesis.plan(29, LONG) if f.kind == "skew"]
    assert skews and set(skews) <= {-600, 600}


def test_the_beat_partition_lasts_longer_than_a_tick() -> None:
    beats = [f for f in nemesis.plan(29, LONG) if f.kind == "partition_beat"]
    assert beats and all(f.duration > LONG.tick_seconds for f in beats)


def test_the_receiver_answers_as_the_script_says() -> None:
    assert [receiver.answer({"script": "ok"}, n) for n in (1, 2)] == [200, 200]
    assert [receiver.answer({"script": "fail_first", "n": 1}, n) for n in (1, 2)] == [500, 200]
    assert [receiver.answer({"script": "always_fail"}, n) for n in (1, 5)] == [500, 500]
