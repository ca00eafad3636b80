"""Alembic environment: the URL comes from DATABASE_URL (or -x url=..., or a passed config)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

from app import config as app_config
from app import models

cfg = context.config
if cfg.config_file_name is not None and cfg.attributes.get("configure_logger", True):
    fileConfig(cfg.config_file_name, disable_existing_loggers=False)

target_metadata = models.Base.metadata


def _url() -> str:
    explicit = context.get_x_argument(as_dictionary=True).get("url") or cfg.attributes.get("url")
    if explicit:
        return explicit
    # The release phase runs this first: a bad setting is one line and status 2.
    return app_config.settings_or_exit().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = cfg.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    section = cfg.get_section(cfg.config_ini_section, {})
    section["sqlalchemy.url"] = _url()
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
