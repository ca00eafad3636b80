"""ops/ against a real /metrics: every metric name the dashboard and the alert rules use is
one /metrics serves, and the webhook families count per receiver host."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from tests.integration.api.test_health_metrics import metrics, set_tick
from tests.support import FakeClock

ROOT = Path(__file__).resolve().parents[3]
NAME = re.compile(r"\bscheduler_[a-z_]+\b")


def names_used_in_ops() -> set[str]:
    rules = (ROOT / "ops" / "prometheus" / "alerts.yml").read_text()
    tests = (ROOT / "ops" / "prometheus" / "alerts_test.yml").read_text()
    dashboard = json.loads((ROOT / "ops" / "grafana" / "scheduler-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return set(NAME.findall(rules + tests + "\n".join(exprs)))


def webhook_history(acme, engine, add_run, now: datetime) -> None:
    """Two webhook triggers (a failing receiver and a healthy one), finished runs of each,
    and one run waiting for a slot."""
    hosts = {"down.example": ("failed", 3), "fine.example": ("succeeded", 2)}
    for host, (status, count) in hosts.items():
        trigger = acme.create(name=host)
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE triggers SET action = CAST(:a AS jsonb) WHERE id = :id"),
                {"a": json.dumps({"type": "webhook", "url": f"https://u@{host}:8443/h"}),
                 "id": trigger["id"]},
            )  # fmt: skip
        for index in range(count):
            run_id = add_run(trigger, status=status, kind="manual",
                             scheduled_for=now - timedelta(minutes=2), finished_at=now)  # fmt: skip
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE runs SET started_at = :s WHERE id = :id"),
                    {"s": now - timedelta(seconds=0.2 + index * 3), "id": run_id},
                )
    add_run(acme.create(name="waiting"), status="pending", scheduled_for=now)


def test_the_webhook_families_count_per_receiver_host(acme, client, services, engine, add_run):
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    services.clock = clock.now
    webhook_history(acme, engine, add_run, clock.now())

    found = metrics(client)

    failed = found["scheduler_webhook_runs_failed_recent"]
    finished = found["scheduler_webhook_runs_finished_recent"]
    assert failed == {(("host", "down.example"),): 3, (("host", "fine.example"),): 0}
    assert finished == {(("host", "down.example"),): 3, (("host", "fine.example"),): 2}
    durations = found["scheduler_webhook_run_duration_seconds_bucket"]
    assert durations[(("le", "0.25"),)] == 2  # the first run of each host: 0.2 s
    assert durations[(("le", "+Inf"),)] == 5
    assert (
        round(found["scheduler_webhook_run_duration_seconds_gsum"][()], 1) == 13.0
    )  # 0.2 + 3.2 + 6.2, 0.2 + 3.2


def test_every_metric_name_in_ops_is_served(acme, client, services, engine, add_run):
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    services.clock = clock.now
    set_tick(engine, clock.now() - timedelta(seconds=5), {"due": 1, "duration_seconds": 0.1})
    webhook_history(acme, engine, add_run, clock.now())

    served = set(metrics(client))

    used = names_used_in_ops()
    assert used - served == set()
    assert {"scheduler_last_tick_age_seconds", "scheduler_runs_waiting"} <= used
