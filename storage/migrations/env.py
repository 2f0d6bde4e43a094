"""Alembic environment: runs migrations against the URL that storage.migrate put in the config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, event, pool

import storage.models  # noqa: F401 - registers every table
from storage.base import Base

config = context.config
target_metadata = Base.metadata


def _foreign_keys_on(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        url = config.get_main_option("sqlalchemy.url")
        assert url is not None, "alembic.ini or the caller sets sqlalchemy.url"
        engine = create_engine(url, poolclass=pool.NullPool)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _foreign_keys_on)
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connectable)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
