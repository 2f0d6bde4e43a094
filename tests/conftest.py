"""Shared fixtures: a real migrated SQLite file per test, a fixed clock, the demo county, a chat driver.

The schema is migrated once per run into a template file with Alembic (so every test also
exercises the migrations) and copied for each test; each test gets its own real database file.
Set WARMLINE_TEST_DATABASE_URL to a PostgreSQL URL to run the database tests there instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bot.app import App, build_app
from bot.config import load_settings
from bot.demo import seed_demo
from dialogs.services import FixedClock
from storage.migrate import upgrade
from tests.chat import Chat

SHANGHAI = ZoneInfo("Asia/Shanghai")
TEST_DATA_KEY = "dGVzdC1vbmx5LWtleS1mb3Itd2FybWxpbmUtdGVzdHM="  # fictional, tests only
START = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _pg_admin(base_url: str) -> Engine:
    return create_engine(make_url(base_url).set(drivername="postgresql+psycopg"),
                         isolation_level="AUTOCOMMIT", poolclass=NullPool)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """On PostgreSQL: one database migrated with Alembic per run, cloned for each test.

    CREATE DATABASE … TEMPLATE copies files, so a fresh migrated database costs milliseconds
    instead of a full migration.
    """
    base = os.environ.get("WARMLINE_TEST_DATABASE_URL")
    if not base:
        yield None
        return
    name = f"wl_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _pg_admin(base)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    upgrade(make_url(base).set(database=name).render_as_string(hide_password=False))
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _postgres_database(base_url: str, template: str) -> tuple[str, str]:
    """A fresh migrated database on the test PostgreSQL server, for one test."""
    name = "wl_" + uuid.uuid4().hex[:12]
    admin = _pg_admin(base_url)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return name, make_url(base_url).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(base_url: str, name: str) -> None:
    admin = _pg_admin(base_url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def db_url(template_db: Path, pg_template: str | None, tmp_path: Path) -> Iterator[str]:
    pg = os.environ.get("WARMLINE_TEST_DATABASE_URL")
    if pg and pg_template:
        name, url = _postgres_database(pg, pg_template)
        yield url
        _drop_postgres_database(pg, name)
        return
    path = tmp_path / "warmline.db"
    shutil.copy(template_db, path)
    yield f"sqlite:///{path}"


@pytest.fixture(autouse=True)
def _shared_database_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI commands and subprocesses under test read the data key the test app wrote with from
    WARMLINE_DATA_KEY, as a deployment would. (A database holding encrypted rows is never given
    a new key file, so a command run without the key would stop.)"""
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
async def app(db_url: str, clock: FixedClock) -> AsyncIterator[App]:
    settings = load_settings(db=db_url, env={"WARMLINE_DATA_KEY": TEST_DATA_KEY})
    application = build_app(settings, clock=clock)
    yield application
    await application.db.adispose()


@pytest.fixture
def county(app: App, clock: FixedClock) -> App:
    """The fictional demo county, seeded into the test database."""
    with app.db.session() as session:
        seed_demo(session, clock.now())
    return app


@pytest.fixture
def volunteer(county: App) -> Chat:
    return Chat(county, "10000000001")


@pytest.fixture
def coordinator(county: App) -> Chat:
    return Chat(county, "10000000101")
