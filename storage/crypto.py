"""Sensitive free text encrypted at rest (AES-256-GCM), with key rotation.

The key ring is attached to each engine's dialect by `storage.db.Database`, so a column type
can reach it without module-level state. Values are stored as "enc2:<base64 of key id, nonce,
ciphertext and tag>"; the 256-bit key is derived (HKDF-SHA256) from the configured key, which
keeps Fernet's format so existing keys and key files stay valid. Values written by earlier
versions ("enc1:", Fernet: AES-128-CBC + HMAC-SHA256) are still read, and rewritten in the new
form by `warmline rekey` or on their next write. Why the change: every conversation step
encrypts its session and reply and decrypts the session, and Fernet's many small steps cost
about 15% of a step; GCM is one call. A value without a prefix (written before encryption was
configured) is read as plain text and encrypted on its next write. With several keys, the
first encrypts and all of them decrypt, so a key can be rotated: add the new key in front, run
`warmline rekey`, then drop the old key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text, inspect, literal, or_, select
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

PREFIX = "enc2:"  # AES-256-GCM, what is written
LEGACY_PREFIX = "enc1:"  # Fernet, still read
PREFIXES = (PREFIX, LEGACY_PREFIX)
_NONCE, _KEY_ID = 12, 4  # bytes; a random 96-bit nonce per value, as GCM expects
KEYRING_ATTR = "warmline_keyring"


class KeyError_(Exception):
    """The data key is missing or does not open the stored data."""


class KeyRing:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise KeyError_("no data key given")
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys])
        except (ValueError, TypeError) as exc:
            raise KeyError_("a data key is not a valid Fernet key (44 url-safe base64 characters)") from exc
        derived = [_derive(k) for k in keys]
        self._current = (_key_id(derived[0]), AESGCM(derived[0]))
        self._by_id: dict[bytes, AESGCM] = {}
        for key in derived:
            self._by_id.setdefault(_key_id(key), AESGCM(key))

    @classmethod
    def from_setting(cls, value: str) -> KeyRing:
        return cls([k for k in value.split(",") if k.strip()])

    def encrypt(self, text: str) -> str:
        key_id, aead = self._current
        nonce = os.urandom(_NONCE)
        sealed = aead.encrypt(nonce, text.encode(), key_id)
        return PREFIX + base64.urlsafe_b64encode(key_id + nonce + sealed).decode()

    def decrypt(self, stored: str) -> str:
        if stored.startswith(PREFIX):
            return self._open(stored[len(PREFIX):])
        if not stored.startswith(LEGACY_PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(LEGACY_PREFIX):].encode()).decode()
        except InvalidToken as exc:
            raise KeyError_("stored data cannot be decrypted with the configured keys") from exc

    def _open(self, token: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(token)
            key_id, nonce, sealed = raw[:_KEY_ID], raw[_KEY_ID:_KEY_ID + _NONCE], raw[_KEY_ID + _NONCE:]
            aead = self._by_id.get(key_id)
            if aead is None:
                raise InvalidTag
            return aead.decrypt(nonce, sealed, key_id).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise KeyError_("stored data cannot be decrypted with the configured keys") from exc

    def rotate(self, stored: str) -> str:
        """The value encrypted again with the first key, in the current form (a fresh nonce)."""
        return self.encrypt(self.decrypt(stored))


def _derive(fernet_key: str) -> bytes:
    """The AES-256 key for a configured key (which keeps Fernet's format)."""
    material = base64.urlsafe_b64decode(fernet_key.strip().encode())
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=b"warmline at-rest enc2").derive(material)


def _key_id(key: bytes) -> bytes:
    """Which key sealed a value, so decrypting tries the right one (it reveals nothing of it)."""
    return hashlib.sha256(b"warmline key id" + key).digest()[:_KEY_ID]


def key_file_for(database_file: Path) -> Path:
    return database_file.with_name(database_file.name + ".key")


def load_or_create_key_file(path: Path, database_url: str | None = None) -> str:
    """A local key beside a SQLite file (demo, single county); created 0600 on first use.

    A key is made only for a database that holds no encrypted value yet: a database copied or
    restored without its key file would otherwise get a fresh key silently, and everything
    encrypted before would stay unreadable. Then the program stops and says what is missing.
    """
    if path.exists():
        return path.read_text().strip()
    if database_url is not None and encrypted_values_present(database_url):
        raise KeyError_(
            f"the data key file {path} is missing, but the database already holds encrypted data; "
            "restore that key file (or set WARMLINE_DATA_KEY to the key it held). "
            "No new key was made: a new key could not open the existing data. "
            f"数据密钥文件 {path} 不存在，而数据库里已有加密数据：请恢复原来的密钥文件（或设置 WARMLINE_DATA_KEY）。")
    key = Fernet.generate_key().decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def encrypted_columns() -> list[tuple[str, str]]:
    """(table, column) of every encrypted column of the models."""
    import storage.models  # noqa: F401 - registers every table on the metadata
    from storage.base import Base

    return [(table.name, column.name) for table in Base.metadata.sorted_tables
            for column in table.columns if isinstance(column.type, EncryptedText | EncryptedJSON)]


def encrypted_values_present(database_url: str) -> bool:
    """Whether any encrypted column of an existing database holds a value (read without a key)."""
    from storage.db import make_sync_engine, sqlite_file

    file = sqlite_file(database_url)
    if file is not None and not file.exists():
        return False
    engine = make_sync_engine(database_url)
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            for table_name, column_name in encrypted_columns():
                if table_name not in present:
                    continue
                table, column = sa_table(table_name, sa_column(column_name, Text)), sa_column(column_name, Text)
                found = conn.execute(select(literal(1)).select_from(table)
                                     .where(or_(*(column.like(p + "%") for p in PREFIXES))).limit(1)).first()
                if found is not None:
                    return True
        return False
    finally:
        engine.dispose()


def _ring(dialect: Dialect) -> KeyRing:
    ring: KeyRing | None = getattr(dialect, KEYRING_ATTR, None)
    if ring is None:
        raise KeyError_("no data key configured for this database (WARMLINE_DATA_KEY)")
    return ring


class EncryptedText(TypeDecorator[str]):
    """Free text that only someone holding the data key can read from the database file."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _ring(dialect).encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not value.startswith(PREFIXES):
            return value
        return _ring(dialect).decrypt(value)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON document (notes about each parent) stored encrypted as a whole."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _ring(dialect).encrypt(json.dumps(value, ensure_ascii=False))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        text = _ring(dialect).decrypt(value) if value.startswith(PREFIXES) else value
        return json.loads(text)
