"""Spreadsheet cells that cannot run: the one rule every XLSX/CSV writer applies to each value.

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read by Excel,
WPS and LibreOffice as a formula (or the start of one), so a family's message or an activity
title such as `=HYPERLINK(...)` would run when a coordinator opens an export. Such text gets a
leading `'`, which the spreadsheet shows as text. Numbers, dates and empty cells pass unchanged
so sums and sorting keep working.
"""

from __future__ import annotations

from typing import TypeVar

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

T = TypeVar("T")


def safe_cell(value: T) -> T | str:
    """The value to write into a cell: text that could start a formula is quoted, the rest as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_row(values: list[object]) -> list[object]:
    return [safe_cell(v) for v in values]
