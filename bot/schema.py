"""Keeping the database at the newest schema before a command uses it."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.db import make_sync_engine
from storage.migrate import alembic_config, upgrade


def is_current(url: str) -> bool:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision() == head
    finally:
        engine.dispose()


def ensure_schema(url: str) -> None:
    """Bring the database to the newest schema; a no-op when it is already there."""
    if not is_current(url):
        upgrade(url)
