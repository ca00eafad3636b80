"""The console's scheduler page: runs waiting by tenant and the slots in use."""

from __future__ import annotations

import re

from app import db, run_history, triggers
from tests import support
from tests.console.conftest import NOW


def test_the_scheduler_page_shows_waiting_runs_by_tenant_and_slots(
    client, sign_in, engine, clock
) -> None:
    with db.session_scope(engine) as session:
        for tenant, waiting in (("busy", 3), ("quiet", 1)):
            values = {"name": "t", "cron": "0 * * * *", "action": {"type": "task", "name": "echo"}}
            trigger = triggers.create(
                session, tenant_id=tenant, values=values, now=clock.now(), max_triggers=100,
                by=support.OWNER,
            )  # fmt: skip
            for _ in range(waiting):  # pending, never handed off: waiting for a slot
                run_history.run_now(
                    session, trigger.id, scope=None, request_key=None, now=NOW, max_waiting=100,
                    by=support.OWNER,
                )  # fmt: skip
    sign_in("ops", admin=True)
    page = client.get("/console/scheduler").text
    assert "Waiting runs by tenant" in page and "Slots in use" in page
    rows = re.findall(r'<tr><th scope="row">(\w+)</th><td>(\d+)</td></tr>', page)
    waiting = page[page.index("Waiting runs by tenant") : page.index("Runs by status")]
    assert re.findall(r'<th scope="row">(\w+)</th><td>(\d+)</td>', waiting) == [
        ("busy", "3"), ("quiet", "1"),
    ]  # fmt: skip
    assert ("pending", "4") in rows and ("admitted", "0") in rows
    assert re.search(r"<dt>Slots in use</dt><dd>0 of \d+ \(admitted and running\)", page)
