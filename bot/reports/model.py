"""The shape of a report, independent of any file format: sections of titled tables.

Values are plain numbers and text, already rounded the way they are shown: rates are percent
numbers with one decimal (50.0 means 50 %), money is yuan with two decimals, averages two
decimals. Every writer (xlsx, csv, html, chat) prints the same values, so one hand count checks
them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

Value = int | float | str | None


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "int"  # int | float | pct | yuan | text | date


@dataclass
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Value]] = field(default_factory=list)
    note: str | None = None

    def add(self, **values: Value) -> None:
        self.rows.append(values)

    def row(self, **match: Any) -> dict[str, Value]:
        """The one row whose values equal `match` (for tests and chat summaries)."""
        found = [r for r in self.rows if all(r.get(k) == v for k, v in match.items())]
        if len(found) != 1:
            raise LookupError(f"{self.key}: {len(found)} rows match {match}")
        return found[0]


@dataclass
class Section:
    key: str
    title: str
    tables: list[Table]
    definition: str = ""

    def table(self, key: str) -> Table:
        for table in self.tables:
            if table.key == key:
                return table
        raise KeyError(key)


@dataclass
class Report:
    title: str
    scope_label: str
    period_label: str
    period_code: str
    start: date
    end: date
    as_of: date
    generated_at: datetime
    sections: list[Section]
    warnings: list[str] = field(default_factory=list)

    def section(self, key: str) -> Section:
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(key)

    def table(self, key: str) -> Table:
        for section in self.sections:
            for table in section.tables:
                if table.key == key:
                    return table
        raise KeyError(key)

    def tables(self) -> list[Table]:
        return [t for s in self.sections for t in s.tables]


def pct(part: float, whole: float) -> float | None:
    """A share as a percent with one decimal; None when there is nothing to share."""
    if not whole:
        return None
    return round(100.0 * part / whole, 1)


def ratio(part: float, whole: float, digits: int = 2) -> float | None:
    if not whole:
        return None
    return round(part / whole, digits)


def yuan(fen: int | float | None) -> float:
    return round((fen or 0) / 100.0, 2)
