"""Database administration used by tests, benchmarks and tooling: throwaway databases and
migrations run in-process (the operator's path is `alembic upgrade head`)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from alembic import command
from alembic.config import Config
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """The server to create databases on: TEST_DATABASE_URL, DATABASE_URL or the local one."""
    return (
        os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL
    )


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database `name`."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def _run_on_server(statement: sql.Composable, url: str | None = None) -> None:
    conn = psycopg2.connect(with_database(url or server_url(), "postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def create_database(prefix: str, *, url: str | None = None) -> str:
    """Create an empty database with a unique name; return its libpq URL."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    _run_on_server(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)), url)
    return with_database(url or server_url(), name)


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    _run_on_server(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)), url
    )


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = sqlalchemy_url(url)
    cfg.attributes["configure_logger"] = False
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
