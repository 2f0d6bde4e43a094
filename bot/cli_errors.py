"""What an operator's mistake looks like on the command line: one line, Chinese / English.

`explain` turns an exception that reached the top of a command into the line(s) to print and the
exit code: 2 for a mistake in what was typed or configured, 1 for a problem with the database or
a file, 1 for anything unexpected (whose traceback `-v` shows). Messages never include
personal data or passwords (database URLs are shown with the password hidden).
"""

from __future__ import annotations

import errno
import re

from bot.commands import UsageError
from bot.config import ConfigError

USAGE, TROUBLE = 2, 1
POSTGRES_DRIVERS = ("psycopg", "psycopg2", "asyncpg", "pg8000")
OTHER_DRIVERS = ("MySQLdb", "pymysql", "aiomysql", "cx_Oracle", "oracledb", "pyodbc", "pymssql")


def _url_text(text: str) -> str:
    """Hide a password in any URL inside a message."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def _database(exc: Exception) -> str | None:
    """A line for the database errors an operator can meet, or None if it is not one of them."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    if isinstance(exc, NoSuchModuleError | ArgumentError):
        return f"数据库地址看不懂 / cannot use this database URL: {_url_text(str(exc))}"
    if not isinstance(exc, DBAPIError):
        return None
    detail = str(exc.orig) if exc.orig is not None else str(exc)
    low = detail.lower()
    if "readonly" in low or "read-only" in low:
        return "数据库是只读的，不能写入（检查文件权限）/ the database is read-only (check the file's permissions)"
    if "file is not a database" in low or "malformed" in low or "not a database" in low:
        return "数据库文件已损坏或不是暖心数据库 / the database file is damaged or not a Warmline database"
    if "unable to open database file" in low:
        return "打不开数据库文件（文件夹不存在或没有权限）/ cannot open the database file (missing folder or no permission)"
    if "connection refused" in low or "could not connect" in low or "connection failed" in low \
            or "timeout" in low or "name or service not known" in low or "could not translate host" in low:
        return f"连不上数据库服务器 / cannot reach the database server: {_url_text(detail.splitlines()[0])}"
    if "password authentication failed" in low or "authentication" in low:
        return "数据库用户名或密码不对 / the database refused the user name or password"
    if "does not exist" in low:
        return f"数据库不存在 / the database does not exist: {_url_text(detail.splitlines()[0])}"
    return f"数据库出错 / database error: {_url_text(detail.splitlines()[0])}"


def _file(exc: OSError) -> str:
    name = exc.filename or ""
    if isinstance(exc, IsADirectoryError):
        return f"{name} 是文件夹，这里需要文件 / is a folder; a file is needed here"
    if isinstance(exc, NotADirectoryError):
        return f"{name} 不是文件夹 / is not a folder"
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"没有权限读写 {name} / no permission to read or write {name}"
    if isinstance(exc, FileNotFoundError):
        return f"找不到 {name} / not found: {name}"
    if exc.errno == errno.ENOSPC:
        return "磁盘已满 / the disk is full"
    return f"读写文件出错 / file error: {name} {exc.strerror or exc}"


def explain(exc: BaseException) -> tuple[list[str], int]:
    if isinstance(exc, UsageError):
        return [str(exc)], USAGE
    if isinstance(exc, ConfigError):
        lines = str(exc).splitlines() or [""]
        return [f"配置错误 / configuration error: {line}" for line in lines], USAGE
    driver = (getattr(exc, "name", None) or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
    if driver in POSTGRES_DRIVERS:
        return ["缺少 PostgreSQL 驱动：python3 -m pip install -e '.[postgres]' / "
                "the PostgreSQL driver is missing: install warmline[postgres]"], TROUBLE
    if driver in OTHER_DRIVERS:
        return [f"缺少数据库驱动 {driver}；暖心支持 SQLite 和 PostgreSQL / missing database driver {driver}; "
                "Warmline runs on SQLite or PostgreSQL"], TROUBLE
    from alembic.util.exc import CommandError

    if isinstance(exc, CommandError):
        text = str(exc)
        if "revision" in text.lower():
            return [f"没有这个数据库版本 / unknown schema revision: {text} "
                    "(可用 / use: head, base, 0001, -1)"], USAGE
        return [f"数据库迁移出错 / migration error: {text}"], TROUBLE
    if isinstance(exc, Exception):
        line = _database(exc)
        if line:
            return [line], TROUBLE
    if isinstance(exc, UnicodeDecodeError):
        return ["文件不是文本（需要 UTF-8）/ the file is not text (UTF-8 expected)"], USAGE
    if isinstance(exc, OSError):
        return [_file(exc)], TROUBLE
    return [f"出错了 / unexpected error: {type(exc).__name__}: {_url_text(str(exc))[:200]} "
            "（加 -v 查看详情 / run with -v for details）"], TROUBLE
