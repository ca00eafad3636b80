"""kombu's Redis transport with one synchronous client per channel.

kombu builds a new `redis.Redis` for every publish and every acknowledgement
(`Channel.conn_or_acquire`), over the channel's one connection pool: about 50 us each,
two or three per run, which py-spy put at 7% of the workers' time with no-op runs. A
client holds no state between commands (a pipeline is an object of its own), so one per
channel serves them all; it follows the channel when kombu replaces the pool (after a fork
or a lost connection). The asynchronous client the consumer polls with is kombu's own.

`tasks.celery_app` installs it for the `redis`, `rediss` and `redis+socket` schemes.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel
