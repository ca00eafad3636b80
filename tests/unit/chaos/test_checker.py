"""The chaos history checker detects each violation it exists for (chaos/checker.py).

Each test crafts a history with exactly one fault in it, and a clean history passes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chaos import checker
from chaos.checker import CapSample, Delivery, RunRecord, TriggerSpec, Window

T0 = datetime(2026, 12, 7, 14, 0, 30, tzinfo=UTC)
WINDOW = Window(
    end=datetime(2026, 12, 7, 14, 3, 0, tzinfo=UTC),
    faults_start=datetime(2026, 12, 7, 14, 1, 0, tzinfo=UTC),
    faults_end=datetime(2026, 12, 7, 14, 2, 0, tzinfo=UTC),
)
CRON = TriggerSpec(id="c", tenant="small-a", created_at=T0, expected_status="succeeded",
                   cron_every_minute=True)  # fmt: skip
ONCE = TriggerSpec(id="o", tenant="noisy", created_at=T0, expected_status="failed",
                   run_at=datetime(2026, 12, 7, 14, 1, 40, tzinfo=UTC))  # fmt: skip
ANCHOR = datetime(2026, 12, 7, 0, 0, 15, tzinfo=UTC)
EVERY = TriggerSpec(id="i", tenant="small-b", created_at=T0, expected_status="succeeded",
                    interval_seconds=60, anchor_at=ANCHOR)  # fmt: skip
MINUTES = [datetime(2026, 12, 7, 14, m, 0, tzinfo=UTC) for m in (1, 2, 3)]
INTERVALS = [datetime(2026, 12, 7, 14, m, 15, tzinfo=UTC) for m in (1, 2)]


def run(trigger: str, at: datetime, status: str, n: int = 0, lag: float = 1.0) -> RunRecord:
    tenant = {"c": "small-a", "o": "noisy", "i": "small-b"}[trigger]
    started = at + timedelta(seconds=lag)
    return RunRecord(id=f"{trigger}-{at:%M%S}-{n}", trigger_id=trigger, tenant=tenant,
                     scheduled_for=at, status=status, started_at=started)  # fmt: skip


def clean_runs() -> list[RunRecord]:
    return (
        [run("c", at, "succeeded") for at in MINUTES]
        + [run("i", at, "succeeded") for at in INTERVALS]
        + [run("o", ONCE.run_at, "failed")]
    )


def verdict(runs, deliveries=(), samples=()) -> checker.Verdict:
    return checker.check(
        [CRON, ONCE, EVERY], runs, deliveries, samples, window=WINDOW, max_running=4,
        max_per_tenant=2, small_tenants=frozenset({"small-a", "small-b"}),
    )  # fmt: skip


def test_a_clean_history_passes_with_every_fire_checked() -> None:
    result = verdict(clean_runs())
    assert result.ok
    assert (result.lost, result.doubled, result.stuck, result.cap_violations) == (0, 0, 0, 0)
    assert result.fires_checked == 6
    assert result.final_line(7) == (
        "chaos: lost=0 doubled=0 cap_violations=0 stuck=0 duplicate_deliveries=0 seed=7"
    )


def test_a_fire_without_a_run_is_lost() -> None:
    result = verdict([r for r in clean_runs() if r.scheduled_for != MINUTES[1]])
    assert result.lost == 1 and not result.ok


def test_a_one_time_fire_without_a_run_is_lost() -> None:
    result = verdict([r for r in clean_runs() if r.trigger_id != "o"])
    assert result.lost == 1


def test_a_fire_run_twice_as_two_runs_is_doubled() -> None:
    result = verdict(clean_runs() + [run("i", INTERVALS[0], "succeeded", n=1)])
    assert result.doubled == 1 and not result.ok


def test_a_run_at_no_nominal_instant_counts_as_doubled() -> None:
    odd = datetime(2026, 12, 7, 14, 2, 30, tzinfo=UTC)
    result = verdict(clean_runs() + [run("c", odd, "succeeded")])
    assert result.doubled == 1


def test_fires_after_the_window_are_not_checked() -> None:
    late = datetime(2026, 12, 7, 14, 4, 0, tzinfo=UTC)
    result = verdict(clean_runs() + [run("c", late, "running")])
    assert result.ok


def test_a_run_not_final_is_stuck() -> None:
    runs = clean_runs()
    runs[0] = run("c", MINUTES[0], "running")
    result = verdict(runs)
    assert result.stuck == 1 and not result.ok


def test_a_final_status_other_than_the_script_is_wrong() -> None:
    runs = clean_runs()
    runs[-1] = run("o", ONCE.run_at, "succeeded")
    result = verdict(runs)
    assert result.wrong_status == 1 and not result.ok


def test_in_progress_over_the_global_or_a_tenant_cap_is_a_violation() -> None:
    samples = [
        CapSample(at=T0, in_progress=4, per_tenant={"small-a": 2, "noisy": 2}),
        CapSample(at=T0, in_progress=5, per_tenant={"small-a": 2, "noisy": 2, "small-b": 1}),
        CapSample(at=T0, in_progress=3, per_tenant={"noisy": 3}),
    ]
    result = verdict(clean_runs(), samples=samples)
    assert result.cap_violations == 2 and not result.ok


def test_duplicate_deliveries_are_counted_but_allowed() -> None:
    deliveries = [
        Delivery(key="k1", body_sha256="a", status=500, at=T0),
        Delivery(key="k1", body_sha256="a", status=200, at=T0),
        Delivery(key="k2", body_sha256="b", status=200, at=T0),
        Delivery(key="k2", body_sha256="b", status=200, at=T0),
        Delivery(key="k2", body_sha256="b", status=204, at=T0),
    ]
    result = verdict(clean_runs(), deliveries=deliveries)
    assert result.duplicate_deliveries == 2
    assert result.ok


def test_one_key_delivered_with_two_payloads_is_a_violation() -> None:
    deliveries = [
        Delivery(key="k1", body_sha256="a", status=200, at=T0),
        Delivery(key="k1", body_sha256="b", status=500, at=T0),
    ]
    result = verdict(clean_runs(), deliveries=deliveries)
    assert result.conflicting_payloads == 1 and not result.ok


def test_lag_percentiles_cover_small_tenants_due_during_the_faults() -> None:
    runs = [run("c", at, "succeeded", lag=x) for at, x in zip(MINUTES, (50, 2, 90), strict=True)]
    runs += [run("i", at, "succeeded", lag=lag) for at, lag in zip(INTERVALS, (4, 70), strict=True)]
    runs += [run("o", ONCE.run_at, "failed", lag=500)]  # the noisy tenant: not counted
    result = verdict(runs)
    # Due in [14:01, 14:02]: c at 14:01 (50 s), c at 14:02 (2 s), i at 14:01:15 (4 s);
    # c at 14:03 (90 s) and i at 14:02:15 (70 s) were due after the faults.
    assert (result.lag_p50, result.lag_p99) == (4, 50)


def test_interval_fires_follow_the_anchor() -> None:
    fires = list(checker.nominal_fires(EVERY, WINDOW.end))
    assert fires == INTERVALS
