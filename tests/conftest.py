"""Fixtures: a database created and migrated per test session, a Redis DB flushed per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
import redis
from sqlalchemy import Engine, text

from app import config, db
from tests import ordering, support

# The test deployment opts in to what production leaves off: plain-HTTP console cookies
# (the servers under test speak HTTP on 127.0.0.1) and the demo `echo` handler. Set in this
# process's environment too, so every process a test starts (gunicorn, workers, the
# Procfile) has them; a test of a production default sets its own values.
TEST_ENVIRONMENT = {
    "SESSION_COOKIE_SECURE": "false",
    "ENABLE_ECHO_HANDLER": "true",  # many tests run the demo handler
    # Webhook secrets are encrypted at rest; every process needs the key (a test key).
    "SECRETS_ENCRYPTION_KEY": "QPVOf_vYNOxj2zyxa9ktj0odAe2SJQCS-yp25X1xUcU=",
}
for _name, _value in TEST_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

TABLES = (
    "runs",
    "triggers",
    "api_keys",
    "idempotency_records",
    "webhook_secrets",
    "waiting_counts",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist (the Makefile's `--dist worksteal`), the long tests open every worker's
    first slice (tests/ordering.py). Every worker computes the same order, as xdist requires
    (a worker's own `dist` option reads "no", so the mode is not checked)."""
    workers = getattr(config, "workerinput", {}).get("workercount", 0)
    if workers > 1:
        items[:] = ordering.deal(
            items, workers, lambda item: ordering.weight_of({m.name for m in item.iter_markers()})
        )


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = support.database_at("head", "sched_test")
    try:
        yield url
    finally:
        db.dispose_engines()
        support.drop_database(url)


# Logical databases a test session may take; 15 is the benchmarks' (BENCH_REDIS_DB).
TEST_REDIS_DBS = range(1, 15)
CLAIM_SECONDS = 3600


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A logical Redis database for this session alone (each test flushes it). Sessions on
    one machine claim theirs in database 0 (`SET NX` with an expiry), so two suites running
    at once never share one; TEST_REDIS_DB pins it."""
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    pinned = os.environ.get("TEST_REDIS_DB")
    index, release = (int(pinned), None) if pinned else _claim_redis_db(base)
    try:
        yield base.rsplit("/", 1)[0] + f"/{index}" if base.count("/") >= 3 else f"{base}/{index}"
    finally:
        if release is not None:
            release()


def _claim_redis_db(base: str) -> tuple[int, Callable[[], None] | None]:
    token = f"{os.getpid()}:{secrets.token_hex(8)}"
    try:
        client = redis.Redis.from_url(base)
        for index in secrets.SystemRandom().sample(TEST_REDIS_DBS, len(TEST_REDIS_DBS)):
            key = f"scheduler-tests:db:{index}"
            if client.set(key, token, nx=True, ex=CLAIM_SECONDS):

                def release(client: redis.Redis = client, key: str = key) -> None:
                    if client.get(key) == token.encode():
                        client.delete(key)
                    client.close()

                return index, release
        client.close()
    except redis.RedisError:
        pass  # no claims without Redis: a random database, as before
    return TEST_REDIS_DBS[secrets.randbelow(len(TEST_REDIS_DBS))], None


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str) -> Iterator[config.Settings]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RELEASE_ID": "test-release",
        "SCHEDULER_RESTART_SECRET": "test-restart-secret-0123456789",
        # The webhook receivers of the tests listen on 127.0.0.1.
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        **TEST_ENVIRONMENT,
    }
    value = config.Settings.from_env(env)
    config.set_settings(value)
    yield value
    config.set_settings(None)


# Bytes of a table's heap past which the fixture below truncates it rather than deletes.
EMPTY_BY_TRUNCATE = 256 * 1024


@pytest.fixture()
def engine(settings: config.Settings) -> Iterator[Engine]:
    """The test database, emptied before the test."""
    engine = db.get_engine(settings.sqlalchemy_url)
    # A TRUNCATE costs 7-40 ms a table (new files for it and its indexes, flushed at the
    # commit), a DELETE and VACUUM of a test's few rows 2-3 ms. So: a table whose file is
    # empty has had no row since its last TRUNCATE and is left be; one grown past
    # EMPTY_BY_TRUNCATE (a test's thousands of rows) is truncated; the others are emptied
    # by DELETE, then VACUUM, which takes the dead rows out of the heap and the indexes (a
    # test that counts the index entries a statement reads would count them). Not its
    # TRUNCATE step: giving the empty pages back waits up to 5 s for a lock that another
    # process of the test's (a module's worker) may hold. Autocommit: VACUUM cannot run in
    # a transaction.
    with db.statements(engine) as conn:
        sizes = conn.execute(
            text("SELECT " + ", ".join(f"pg_relation_size('{t}')" for t in TABLES))
        ).one()
        large = [
            table for table, size in zip(TABLES, sizes, strict=True) if size > EMPTY_BY_TRUNCATE
        ]
        small = [t for t, size in zip(TABLES, sizes, strict=True) if 0 < size <= EMPTY_BY_TRUNCATE]
        if large:
            conn.execute(text(f"TRUNCATE {', '.join(large)}"))
        for table in small:
            conn.execute(text(f"DELETE FROM {table}"))
        if small:
            conn.execute(text(f"VACUUM (TRUNCATE false) {', '.join(small)}"))
        conn.execute(
            text(
                "UPDATE scheduler_state SET generation = 0, deployment_id = NULL, "
                "restarted_at = NULL, last_tick_at = NULL, last_tick_stats = NULL"
            )
        )
    yield engine


@pytest.fixture()
def redis_client(settings: config.Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture()
def clock() -> support.FakeClock:
    return support.FakeClock()


@pytest.fixture()
def celery_app(settings: config.Settings, redis_client: redis.Redis) -> Iterator[object]:
    """The product's Celery app publishing to the test Redis (queues emptied per test)."""
    from tasks import celery
    from tasks.celery_app import use_broker

    use_broker(celery, settings.redis_url)
    yield celery
    use_broker(celery, settings.redis_url)
