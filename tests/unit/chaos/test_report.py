"""The chaos report is written from its facts, and redrawn from their JSON (chaos/report.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chaos import checker, nemesis, report

T0 = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def facts() -> report.Facts:
    runs = [
        checker.RunRecord(
            id=f"r{n}",
            trigger_id="t",
            tenant="small-a",
            scheduled_for=T0 + timedelta(minutes=n),
            status="succeeded",
            started_at=T0 + timedelta(minutes=n, seconds=2),
            finished_at=T0 + timedelta(minutes=n, seconds=3),
        )  # fmt: skip
        for n in range(3)
    ]
    freeze = nemesis.Fault("freeze", "w1", 10.0, 20.0)
    applied = [nemesis.Applied(freeze, began=T0.timestamp() + 10, ended=T0.timestamp() + 30,
                               how="SIGSTOP")]  # fmt: skip
    verdict = checker.Verdict(fires_checked=3, lag_p50=2.0, lag_p99=2.0)
    return report.Facts(seed=5, mode="ci", load_seconds=180, wall_seconds=200,
                        t0=T0.timestamp(), settings={"MAX_RUNNING": "6"}, applied=applied,
                        nemesis_errors=[], verdict=verdict, runs=runs,
                        small_tenants=frozenset({"small-a"}), deliveries=0, samples=10,
                        final_line=verdict.final_line(5))  # fmt: skip


def test_the_report_prints_the_seed_and_the_final_line_and_redraws_from_its_facts(
    tmp_path: Path,
) -> None:
    pytest.importorskip("matplotlib")
    path = report.write(facts(), tmp_path)
    text = path.read_text()
    assert "Seed **5**" in text
    assert "chaos: lost=0 doubled=0 cap_violations=0 stuck=0 duplicate_deliveries=0 seed=5" in text
    assert (tmp_path / "timeline-ci.png").stat().st_size > 0
    again = report.load(tmp_path / "facts-ci.json")
    assert again.runs == facts().runs and again.applied == facts().applied
    assert report.markdown(again, "timeline-ci.png") == text
