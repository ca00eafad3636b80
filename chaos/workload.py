"""Tenants and triggers, created through the API, each with the final status its script leads to.

Small tenants (`small-a`...) each have:
- a cron trigger every minute, webhook, receiver answers 200 (succeeds);
- a cron trigger every minute, handler `echo` that fails its first attempt and sleeps (succeeds
  on the second attempt; long enough that a frozen worker is likely to hold one);
- an interval trigger (60 s, anchored at a random second), webhook whose first delivery of each
  key is answered 500 (succeeds on a retry);
- a cron trigger every minute that always fails (webhook 500 or handler failure: `failed`);
- one-time triggers at random instants of the load.
The noisy tenant has a burst: many one-time `echo` triggers due at one instant.

Scripts leave a margin: a run that must succeed needs 2 attempts of 4, so an attempt lost to a
fault (taken over by the sweep, a timeout after a lost response) does not change its outcome.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy.orm import Session

from app import db, keys
from chaos import net, stack
from chaos.checker import TriggerSpec

HOOK_URL = f"http://{net.HOSTS['recv']}:{stack.RECEIVER_PORT}/hook"
COMMON = {"catchup_policy": "all", "catchup_window_seconds": 3600, "retry_backoff_seconds": 1,
          "timeout_seconds": 10}  # fmt: skip


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_keys(database_url: str, tenants: list[str]) -> dict[str, str]:
    """One API key per tenant, created directly in the database (as the CLI does)."""
    engine = db.get_engine(database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    found = {}
    with Session(engine) as session:
        for tenant in tenants:
            new = keys.create(session, tenant_id=tenant, principal="chaos", role="admin",
                              name="chaos", now=datetime.now(UTC))  # fmt: skip
            found[tenant] = new.key
        session.commit()
    engine.dispose()
    return found


class Client:
    def __init__(self, base: str, key: str, tenant: str) -> None:
        self.base, self.tenant = base, tenant
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def create(self, body: dict, expected: str) -> TriggerSpec:
        response = self.http.post(f"{self.base}/api/v1/triggers", json={**COMMON, **body},
                                  timeout=30)  # fmt: skip
        if response.status_code != 201:
            raise RuntimeError(f"create {body['name']}: {response.status_code} {response.text}")
        # The API has answered: every fire strictly after this instant must run.
        created = datetime.now(UTC)
        data = response.json()
        return TriggerSpec(
            id=data["id"], tenant=self.tenant, created_at=created, expected_status=expected,
            cron_every_minute=body.get("cron") == "* * * * *",
            interval_seconds=body.get("interval_seconds"),
            anchor_at=_parse(body.get("anchor_at")), run_at=_parse(body.get("run_at")),
        )  # fmt: skip


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def webhook(script: str, n: int = 0) -> dict:
    return {"action": {"type": "webhook", "url": HOOK_URL}, "payload": {"script": script, "n": n}}


def echo(*, fail_times: int = 0, sleep_seconds: float = 0) -> dict:
    payload = {"fail_times": fail_times, "sleep_seconds": sleep_seconds}
    return {"action": {"type": "task", "name": "echo"}, "payload": payload}


def small_tenant(
    client: Client, index: int, rng: random.Random, *, load_end: datetime, one_time: int
) -> list[TriggerSpec]:
    now = datetime.now(UTC)
    anchor = now.replace(microsecond=0) + timedelta(seconds=rng.randrange(60))
    specs = [
        client.create({"name": "cron-ok", "cron": "* * * * *", "max_attempts": 4,
                       **webhook("ok")}, "succeeded"),
        client.create({"name": "cron-echo-retry", "cron": "* * * * *", "max_attempts": 4,
                       **echo(fail_times=1, sleep_seconds=2)}, "succeeded"),
        client.create({"name": "interval-flaky", "interval_seconds": 60,
                       "anchor_at": iso(anchor), "max_attempts": 4,
                       **webhook("fail_first", 1)}, "succeeded"),
    ]  # fmt: skip
    failing = webhook("always_fail") if index % 2 == 0 else echo(fail_times=20)
    specs.append(client.create({"name": "cron-fails", "cron": "* * * * *", "max_attempts": 2,
                                **failing}, "failed"))  # fmt: skip
    span = max(1, int((load_end - now).total_seconds()) - 40)
    for n in range(one_time):
        at = now + timedelta(seconds=20 + rng.randrange(span), milliseconds=rng.randrange(1000))
        action = webhook("ok") if n % 2 else echo(sleep_seconds=1)
        specs.append(client.create({"name": f"once-{n}", "run_at": iso(at), "max_attempts": 4,
                                    **action}, "succeeded"))  # fmt: skip
    return specs


def noisy_burst(client: Client, *, at: datetime, count: int) -> list[TriggerSpec]:
    """`count` one-time triggers of the noisy tenant, all due at `at`."""
    return [
        client.create(
            {"name": f"burst-{n}", "run_at": iso(at), "max_attempts": 4, **echo(sleep_seconds=0.5)},
            "succeeded",
        )  # fmt: skip
        for n in range(count)
    ]
