"""In-progress runs (admitted or running), in all and per tenant, sampled every 100 ms.

The sampler connects from the root namespace, which no partition touches, with an
application_name that the backend-killing fault spares; it reconnects after any error.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg2

from chaos.checker import CapSample

QUERY = (
    "SELECT tenant_id, count(*) FROM runs WHERE status IN ('admitted', 'running') "
    "GROUP BY tenant_id"
)


class Sampler(threading.Thread):
    def __init__(self, url: str, period: float = 0.1) -> None:
        super().__init__(name="cap-sampler", daemon=True)
        self.url, self.period = url, period
        self.samples: list[CapSample] = []
        self.errors = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn = None
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                if conn is None:
                    conn = psycopg2.connect(self.url, application_name="chaos-sampler",
                                            connect_timeout=2)  # fmt: skip
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(QUERY)
                    per_tenant = {tenant: int(n) for tenant, n in cur.fetchall()}
                self.samples.append(CapSample(at=datetime.now(UTC),
                                              in_progress=sum(per_tenant.values()),
                                              per_tenant=per_tenant))  # fmt: skip
            except psycopg2.Error:
                self.errors += 1
                conn = None
            self._stop_event.wait(max(0.0, self.period - (time.monotonic() - started)))
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
