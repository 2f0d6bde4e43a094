"""The dialogs' view of the text catalogue; the lookup itself is `domain.catalog`."""

from __future__ import annotations

from domain.catalog import CATALOG_DIR, DEFAULT_LOCALE, _flatten, has, keys, locales, t

__all__ = ["CATALOG_DIR", "DEFAULT_LOCALE", "_flatten", "has", "keys", "locales", "t"]
