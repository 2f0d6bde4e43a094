"""Regenerate the initial Alembic migration from the models.

Until Warmline's first release there is no deployed database to migrate, so the schema is one
initial revision, regenerated whenever the models change. After the first release, migrations
become additive (a new revision per change) and this script is retired.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from storage.migrate import MIGRATIONS, alembic_config

REV = "0001"


def main() -> None:
    for old in (MIGRATIONS / "versions").glob(f"{REV}_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(f"sqlite:///{Path(tmp) / 'empty.db'}")
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id=REV)


if __name__ == "__main__":
    main()
