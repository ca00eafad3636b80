"""/metrics, /healthz and the backlog over real HTTP (gunicorn), docs/design.md section 17.

/metrics used to show tenant ids and their backlog to anyone and read the database on every
scrape; /healthz opened a broker connection per call, and one tenant's backlog turned it
503 for everyone.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import factories, gunicorn

pytestmark = pytest.mark.slow
TOKEN = "metrics-token-of-the-tests-0123456789"


def add_run(engine, tenant: str, *, status: str = "pending", waited: timedelta = timedelta()):
    at = datetime.now(UTC) - waited
    with engine.begin() as conn:
        factories.make_run(conn, tenant_id=tenant, status=status, scheduled_for=at, created_at=at)


def scrape(base: str, **headers: str) -> dict[str, dict[tuple, float]]:
    response = requests.get(f"{base}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture()
def metrics_server(settings, engine, redis_client, tmp_path) -> Iterator[str]:
    with gunicorn.serve(
        settings, tmp_path / "gunicorn.log", METRICS_TOKEN=TOKEN, METRICS_TOP_TENANTS="2",
        METRICS_CACHE_SECONDS="60",
    ) as base:  # fmt: skip
        yield base


def test_metrics_need_the_metrics_token_when_it_is_set(metrics_server):
    bare = requests.get(f"{metrics_server}/metrics", timeout=30)
    wrong = requests.get(
        f"{metrics_server}/metrics", headers={"Authorization": "Bearer nope"}, timeout=30
    )

    assert (bare.status_code, wrong.status_code) == (401, 401)
    assert bare.json()["error"]["code"] == "unauthorized"
    assert "scheduler_" not in bare.text + wrong.text
    assert scrape(metrics_server, Authorization=f"Bearer {TOKEN}")["scheduler_database_up"]


def test_metrics_label_only_the_top_tenants(metrics_server, engine):
    for tenant, runs in (("big", 3), ("middle", 2), ("small", 1)):
        for _ in range(runs):
            add_run(engine, tenant)

    waiting = scrape(metrics_server, Authorization=f"Bearer {TOKEN}")["scheduler_runs_waiting"]

    assert waiting == {(("tenant", "big"),): 3, (("tenant", "middle"),): 2}


def test_metrics_serve_a_cached_snapshot(metrics_server, engine):
    add_run(engine, "acme")
    first = scrape(metrics_server, Authorization=f"Bearer {TOKEN}")
    add_run(engine, "acme")
    second = scrape(metrics_server, Authorization=f"Bearer {TOKEN}")

    assert first["scheduler_runs_waiting_total"] == second["scheduler_runs_waiting_total"]
    assert second["scheduler_runs_waiting_total"][()] == 1  # read once, within 60 s


class CountingProxy:
    """A TCP forwarder to the real Redis that counts the connections made through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


@contextmanager
def counting_proxy(redis_url: str) -> Iterator[CountingProxy]:
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = CountingProxy((host, int(port)))
    try:
        yield proxy
    finally:
        proxy.listener.close()


def test_healthz_checks_the_broker_once_for_many_calls(settings, engine, redis_client, tmp_path):
    with counting_proxy(settings.redis_url) as proxy:
        broker = f"redis://127.0.0.1:{proxy.port}/{settings.redis_url.rsplit('/', 1)[1]}"
        with gunicorn.serve(settings, tmp_path / "gunicorn.log", BROKER_URL=broker) as base:
            answers = [requests.get(f"{base}/healthz", timeout=30) for _ in range(5)]

    assert [a.json()["checks"]["broker"] for a in answers] == [{"ok": True}] * 5
    assert proxy.connections == 1


@pytest.fixture()
def ops_server(settings, engine, redis_client, tmp_path) -> Iterator[str]:
    with gunicorn.serve(
        settings, tmp_path / "gunicorn.log", MAX_RUNNING_PER_TENANT="1",
        MAX_WAITING_RUNS_PER_TENANT="2",
    ) as base:  # fmt: skip
        yield base


def test_one_tenants_backlog_leaves_healthz_healthy(ops_server, engine):
    add_run(engine, "acme", waited=timedelta(minutes=11))

    response = requests.get(f"{ops_server}/healthz", timeout=30)

    assert response.status_code == 200, response.text
    assert set(response.json()["checks"]) == {"database", "broker", "scheduler"}


def test_the_backlog_is_an_ops_endpoint_without_tenants_held_by_their_own_cap(
    ops_server, engine, make_key
):
    url = f"{ops_server}/api/v1/admin/backlog"
    admin = {"Authorization": f"Bearer {make_key('ops', admin=True)}"}
    tenant = {"Authorization": f"Bearer {make_key('acme')}"}
    add_run(engine, "busy", status="running")  # at MAX_RUNNING_PER_TENANT (1)
    add_run(engine, "busy", waited=timedelta(minutes=11))
    add_run(engine, "piler", waited=timedelta(minutes=11))  # at MAX_WAITING_RUNS_PER_TENANT
    add_run(engine, "piler", waited=timedelta(minutes=11))

    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, headers=tenant, timeout=30).status_code == 404
    held = requests.get(url, headers=admin, timeout=30)
    add_run(engine, "acme", waited=timedelta(minutes=11))
    growing = requests.get(url, headers=admin, timeout=30)

    assert held.status_code == 200, held.text
    body = held.json()
    assert (body["status"], body["waiting"], body["slots_in_use"]) == ("ok", 0, 1)
    assert {t["tenant_id"]: t["cap"] for t in body["held_tenants"]} == {
        "busy": "MAX_RUNNING_PER_TENANT", "piler": "MAX_WAITING_RUNS_PER_TENANT",
    }  # fmt: skip
    assert growing.status_code == 503
    body = growing.json()
    assert (body["status"], body["waiting"]) == ("unhealthy", 1)
    assert body["oldest_wait_seconds"] > 600 == body["max_wait_seconds"]
