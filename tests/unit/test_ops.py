"""ops/: the Prometheus alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), and every query of the Grafana dashboard parses as PromQL.

promtool comes from Debian's `prometheus` package (.ci/run installs it): without it these
tests skip, except in CI (CI=true), where that fails. That every metric name used here is
one /metrics serves is checked against a real /metrics in
tests/integration/api/test_ops_metrics.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "scheduler-dashboard.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is missing in CI (apt-get install prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def test_the_alert_rules_pass_promtool_check(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    done = run(promtool, "test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path) -> None:
    # Each query as a recording rule: promtool parses the expression of each.
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for index, (_, expr) in enumerate(dashboard_queries()):
        lines += [f"      - record: dashboard:query_{index}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    done = run(promtool, "check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_query_is_caught(promtool: str, tmp_path: Path) -> None:
    # The sensor of the test above: a bad expression fails the same check.
    rules = tmp_path / "broken.yml"
    rules.write_text(
        'groups:\n  - name: x\n    rules:\n      - record: x:y\n        expr: "sum(by (le) x"\n'
    )
    assert run(promtool, "check", "rules", str(rules)).returncode != 0


def test_the_dashboard_shows_what_operators_asked_for() -> None:
    titles = " | ".join(title.lower() for title, _ in dashboard_queries())
    for wanted in ("fire lag", "outcome", "waiting runs by tenant", "slots", "tick duration",
                   "last tick age", "webhook latency"):  # fmt: skip
        assert wanted in titles
