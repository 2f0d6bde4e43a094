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
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.app import App, build_app
from bot.config import load_settings
from bot.demo import seed_demo
from dialogs.services import FixedClock
from storage.migrate import upgrade
from tests.chat import Chat

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _postgres_database(base_url: str) -> str:
    """A fresh database on the test PostgreSQL server, migrated, for one test."""
    name = "wl_" + uuid.uuid4().hex[:12]
    admin = create_engine(make_url(base_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return url


@pytest.fixture
def db_url(template_db: Path, tmp_path: Path) -> Iterator[str]:
    pg = os.environ.get("WARMLINE_TEST_DATABASE_URL")
    if pg:
        yield _postgres_database(pg)
        return
    path = tmp_path / "warmline.db"
    shutil.copy(template_db, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
async def app(db_url: str, clock: FixedClock) -> AsyncIterator[App]:
    settings = load_settings(db=db_url, env={})
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
