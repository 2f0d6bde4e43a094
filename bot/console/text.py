"""The console's words: Simplified Chinese first, English beside it (catalog/console.*.toml).

Pages show the Chinese and, in smaller type, the English (`both`); a key missing in English
falls back to Chinese, and a key missing in Chinese is an error found by the tests.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from dialogs.engine import catalog
from dialogs.engine.catalog import _flatten  # the chat catalogues' reader: same format

CATALOG = Path(__file__).with_name("catalog")


@cache
def load(locale: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(CATALOG.glob(f"*.{locale}.toml")):
        with path.open("rb") as fh:
            _flatten("", tomllib.load(fh), out)
    return out


def t(key: str, locale: str = "zh", **values: Any) -> str:
    text = load(locale).get(key) or load("zh").get(key)
    if text is None:
        raise KeyError(f"missing console text {key!r}")
    return text.format(**values) if values else text


def both(key: str, **values: Any) -> Markup:
    """Chinese, then the English in a smaller span (omitted when it says the same)."""
    return pair(t(key, "zh", **values), t(key, "en", **values))


def chat_both(key: str, **values: Any) -> Markup:
    """The same for a key of the chat's catalogues (dialogs/catalog), so a rule's message reads
    the same on the web as in chat."""
    return pair(catalog.t(key, "zh", **values), catalog.t(key, "en", **values))


def pair(zh: str, en: str) -> Markup:
    if zh == en:
        return Markup(escape(zh))
    return Markup('{}<span class="en" lang="en">{}</span>').format(zh, en)
