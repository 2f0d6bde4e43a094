"""A dialog's answers as a typed structure, saved as the session's JSON between steps.

A dialog declares a dataclass of its answers (every field with a default, since a dialog fills
them one question at a time) and names it in `form_type`. The runner keeps handing the dialog
and the session row plain JSON; `Form.load` reads it back into the dataclass — dates from ISO
strings, unknown keys ignored (a session saved by an older version still loads) — and
`Form.dump` writes it out again. So a typo in a field name is a type error, not a silent new
key, and `date` fields are dates inside the dialog.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from datetime import date
from typing import Any, Self

_SHAPES: dict[type, tuple[frozenset[str], frozenset[str]]] = {}


def _shape(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """A form class's field names, and those of them that hold dates (read once per class)."""
    shape = _SHAPES.get(cls)
    if shape is None:
        hints = typing.get_type_hints(cls)
        names = frozenset(f.name for f in dataclasses.fields(cls))
        dates = frozenset(name for name in names
                          if hints[name] is date or date in typing.get_args(hints[name]))
        shape = _SHAPES[cls] = (names, dates)
    return shape


@dataclasses.dataclass
class Form:
    """Base of every dialog's answers; subclasses are dataclasses too."""

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> Self:
        names, dates = _shape(cls)
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                continue
            if key in dates and isinstance(value, str):
                value = date.fromisoformat(value)
            values[key] = value
        return cls(**values)

    def dump(self) -> dict[str, Any]:
        names, dates = _shape(type(self))
        out: dict[str, Any] = {}
        for name in names:
            value = getattr(self, name)
            out[name] = value.isoformat() if name in dates and value is not None else value
        return out

    def prefill(self, args: Mapping[str, Any]) -> Self:
        """A copy with what a caller pre-filled (a reminder's household, an invitation's id)."""
        return type(self).load({**self.dump(), **args})
