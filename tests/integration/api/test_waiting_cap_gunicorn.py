"""MAX_WAITING_RUNS_PER_TENANT over real HTTP (gunicorn): backfills and run-now past the cap
are a 409 naming it, with nothing created (docs/design.md section 17)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import text

from tests import factories, gunicorn

pytestmark = pytest.mark.slow
LIMIT = 100


@pytest.fixture()
def server(settings, engine, redis_client, tmp_path) -> Iterator[str]:
    with engine.begin() as conn:  # the one slot is taken: every new run stays pending
        factories.occupy_slot(conn)
    with gunicorn.serve(
        settings, tmp_path / "gunicorn.log", MAX_WAITING_RUNS_PER_TENANT=str(LIMIT),
        MAX_RUNNING="1", MAX_RUNNING_PER_TENANT="1",
    ) as base:  # fmt: skip
        yield base


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_backfill_and_run_now_stop_at_the_cap(server, make_key, engine):
    auth = {"Authorization": f"Bearer {make_key('acme')}"}
    body = {"name": "m", "cron": "* * * * *", "action": {"type": "task", "name": "echo"}}
    trigger = requests.post(f"{server}/api/v1/triggers", json=body, headers=auth, timeout=30)
    url = f"{server}/api/v1/triggers/{trigger.json()['id']}"
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)

    def backfill(minutes: int, ending: datetime) -> requests.Response:
        window = {"start": iso(ending - timedelta(minutes=minutes)), "end": iso(ending)}
        return requests.post(f"{url}/backfill", json=window, headers=auth, timeout=30)

    assert backfill(90, end).json() == {"created": 90, "existing": 0}
    refused = backfill(20, end - timedelta(hours=2))
    runs_now = [requests.post(f"{url}/run", headers=auth, timeout=30) for _ in range(11)]

    assert refused.status_code == 409
    assert "MAX_WAITING_RUNS_PER_TENANT" in refused.json()["error"]["message"]
    assert [r.status_code for r in runs_now] == [202] * 10 + [409]
    with engine.connect() as conn:
        waiting = conn.execute(
            text("SELECT count(*) FROM runs WHERE tenant_id = 'acme' AND status = 'pending'")
        ).scalar_one()
    assert waiting == LIMIT
