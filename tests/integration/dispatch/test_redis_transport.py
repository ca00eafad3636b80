"""The Redis transport keeps one client per channel (tasks/redis_transport.py)."""

from __future__ import annotations

import uuid

import redis

from tasks import publish


def test_publishing_runs_one_at_a_time_builds_no_redis_client_each(
    celery_app, queued, monkeypatch
) -> None:
    first = str(uuid.uuid4())
    publish.enqueue_runs([first])  # the producer's connection and channel, and their clients
    built: list[int] = []
    real_init = redis.Redis.__init__

    def counted(self, *args, **kwargs):
        built.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counted)
    run_ids = [str(uuid.uuid4()) for _ in range(5)]

    for run_id in run_ids:
        publish.enqueue_runs([run_id])

    assert queued() == [first, *run_ids]
    assert built == [], "kombu's own transport builds one per publish"


def test_the_channels_client_follows_a_new_connection_pool(celery_app) -> None:
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        assert type(channel).__module__ == "tasks.redis_transport"
        client = channel._create_client()
        assert channel._create_client() is client

        channel._disconnect_pools()  # as after a fork, or a lost connection

        fresh = channel._create_client()
        assert fresh is not client and fresh.connection_pool is channel.pool
        assert fresh.ping()
