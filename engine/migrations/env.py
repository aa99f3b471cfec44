"""Alembic environment: the URL comes from the app settings (and QRM_DATABASE_URL)."""

from __future__ import annotations

from alembic import context
from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy import pool

from engine.db import get_engine
from engine.models import metadata
from engine.plugins.manager import load_plugin_models
from engine.settings import normalize_settings

config = context.config
load_plugin_models()
target_metadata = metadata


def _settings() -> dict:
    connection = config.attributes.get("connection")
    if connection is not None:
        return {}
    config_file = config.config_file_name
    if config_file:
        setup_logging(config_file)
        return normalize_settings(get_appsettings(config_file))
    return normalize_settings({})


def run_migrations_offline() -> None:
    context.configure(url=_settings()["sqlalchemy.url"], target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_sqlite(connection) -> None:
    """SQLite rebuilds a table to change it ("batch" migrations): with foreign keys enforced,
    dropping the old copy would delete (or refuse for) the rows that refer to it. So they are
    switched off for the migration (possible only outside a transaction) and every reference
    is checked afterwards."""
    raw = connection.connection.dbapi_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        _run(connection)
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration left broken references: {broken[:5]}")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = get_engine(_settings(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            _run_sqlite(connection)
        else:
            _run(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
