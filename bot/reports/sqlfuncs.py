"""The few SQL expressions that differ between SQLite and PostgreSQL, written once.

Reports group by local calendar day, ISO week and month inside the database (set-based, one
query per figure), which needs date arithmetic each backend spells differently.
SQLite has no time-zone database, so there a local day is the UTC instant shifted by the zone's
offset at the start of the report period; for Asia/Shanghai (no daylight saving) this is exact.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Date, Integer, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement, literal


class local_date(FunctionElement[date]):
    """The local calendar day of a UTC timestamp: local_date(ts, zone_name, offset_minutes)."""

    type = Date()
    inherit_cache = True
    name = "local_date"


@compiles(local_date)
def _local_date_default(element: local_date, compiler: SQLCompiler, **kw: Any) -> str:
    ts, zone, _offset = list(element.clauses)
    return f"CAST({compiler.process(ts, **kw)} AT TIME ZONE {compiler.process(zone, **kw)} AS DATE)"


@compiles(local_date, "sqlite")
def _local_date_sqlite(element: local_date, compiler: SQLCompiler, **kw: Any) -> str:
    ts, _zone, offset = list(element.clauses)
    return f"date({compiler.process(ts, **kw)}, ({compiler.process(offset, **kw)} || ' minutes'))"


class day_number(FunctionElement[int]):
    """Whole days from an origin date to a date expression: day_number(day, origin)."""

    type = Integer()
    inherit_cache = True
    name = "day_number"


@compiles(day_number)
def _day_number_default(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    day, origin = list(element.clauses)
    return f"(CAST({compiler.process(day, **kw)} AS DATE) - CAST({compiler.process(origin, **kw)} AS DATE))"


@compiles(day_number, "sqlite")
def _day_number_sqlite(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    day, origin = list(element.clauses)
    return (f"CAST(julianday({compiler.process(day, **kw)}) - "
            f"julianday({compiler.process(origin, **kw)}) AS INTEGER)")


class month_key(FunctionElement[str]):
    """'YYYY-MM' of a date expression."""

    type = String()
    inherit_cache = True
    name = "month_key"


@compiles(month_key)
def _month_key_default(element: month_key, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = list(element.clauses)
    return f"to_char({compiler.process(day, **kw)}, 'YYYY-MM')"


@compiles(month_key, "sqlite")
def _month_key_sqlite(element: month_key, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = list(element.clauses)
    return f"strftime('%Y-%m', {compiler.process(day, **kw)})"


def date_literal(day: date) -> ColumnElement[date]:
    """A date constant both backends compare and subtract as a date."""
    return literal(day, Date())


def local_day(ts: ColumnElement[Any], zone: str, offset_minutes: int) -> ColumnElement[date]:
    return local_date(ts, literal(zone, String()), literal(offset_minutes, Integer()))


class epoch_day(FunctionElement[int]):
    """Days from 1970-01-01 to a date column (NULL stays NULL): the planner's day numbers."""

    type = Integer()
    inherit_cache = True
    name = "epoch_day"


@compiles(epoch_day)
def _epoch_day_default(element: epoch_day, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = list(element.clauses)
    return f"({compiler.process(day, **kw)} - DATE '1970-01-01')"


@compiles(epoch_day, "sqlite")
def _epoch_day_sqlite(element: epoch_day, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = list(element.clauses)
    return f"CAST(julianday({compiler.process(day, **kw)}) - 2440587.5 AS INTEGER)"


class epoch_seconds(FunctionElement[int]):
    """Whole seconds from 1970-01-01 UTC to a timestamp column (rounded down)."""

    type = Integer()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(epoch_seconds)
def _epoch_seconds_default(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    (ts,) = list(element.clauses)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(ts, **kw)})) AS BIGINT)"


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    (ts,) = list(element.clauses)
    return f"CAST(strftime('%s', {compiler.process(ts, **kw)}) AS INTEGER)"


class month_number(FunctionElement[int]):
    """The month (1–12) of a date column."""

    type = Integer()
    inherit_cache = True
    name = "month_number"


@compiles(month_number)
def _month_number_default(element: month_number, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = list(element.clauses)
    return f"CAST(EXTRACT(MONTH FROM {compiler.process(day, **kw)}) AS INTEGER)"


@compiles(month_number, "sqlite")
def _month_number_sqlite(element: month_number, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = list(element.clauses)
    return f"CAST(strftime('%m', {compiler.process(day, **kw)}) AS INTEGER)"
