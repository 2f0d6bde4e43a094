"""`warmline rekey`: re-encrypt every sensitive field with the newest data key (key rotation)."""

from __future__ import annotations

import argparse

from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from bot.commands import open_app
from storage.base import Base
from storage.crypto import EncryptedJSON, EncryptedText

BATCH = 500


def encrypted_columns() -> dict[type, list[str]]:
    """Each mapped class with the attribute names of its encrypted columns."""
    found: dict[type, list[str]] = {}
    for mapper in Base.registry.mappers:
        names = [attr.key for attr in mapper.column_attrs
                 if isinstance(attr.columns[0].type, EncryptedText | EncryptedJSON)]
        if names:
            found[mapper.class_] = names
    return found


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("rekey", help="re-encrypt sensitive fields with the first WARMLINE_DATA_KEY")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    total = 0
    for model, names in encrypted_columns().items():
        with app.db.session() as session:
            for row in session.scalars(select(model).execution_options(yield_per=BATCH)):
                for name in names:
                    if getattr(row, name) is not None:
                        flag_modified(row, name)
                        total += 1
    print(f"已用最新密钥重新加密 {total} 个字段 / re-encrypted {total} fields")
    return 0
