"""User-facing text, looked up by key: Simplified Chinese first, English beside it.

The catalogues are TOML files in `dialogs/catalog/` (most of the words are the dialogs'); the
lookup lives here, below the dialogs, because the rules shared with the scheduled jobs (an
invitation, a renewal task, an alert) word their messages too. A key missing from a
non-default language falls back to Chinese so a gap never shows a raw key to a volunteer.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

CATALOG_DIR = Path(__file__).resolve().parent.parent / "dialogs" / "catalog"
DEFAULT_LOCALE = "zh"


def _flatten(prefix: str, tree: dict[str, Any], out: dict[str, str]) -> None:
    for key, value in tree.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            _flatten(full, value, out)
        else:
            out[full] = str(value)


@cache
def _load(locale: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(CATALOG_DIR.glob(f"*.{locale}.toml")):
        with path.open("rb") as fh:
            _flatten(path.name.split(".")[0], tomllib.load(fh), out)
    return out


def locales() -> list[str]:
    return sorted({p.name.split(".")[1] for p in CATALOG_DIR.glob("*.toml")})


def has(key: str, locale: str = DEFAULT_LOCALE) -> bool:
    return key in _load(locale) or key in _load(DEFAULT_LOCALE)


def t(key: str, locale: str = DEFAULT_LOCALE, **values: Any) -> str:
    """The text for `key`, formatted with `values`."""
    text = _load(locale).get(key) or _load(DEFAULT_LOCALE).get(key)
    if text is None:
        raise KeyError(f"missing catalogue key {key!r}")
    return text.format(**values) if values else text


def keys(locale: str) -> set[str]:
    return set(_load(locale))
