"""Which approved SMS template carries a message, and its variables.

Mainland SMS cannot carry our own words: only a template the provider approved, with variables
filled in. A message looks for `<kind>_<occasion>` then `<kind>` in `[sms.templates]`; a
template without a `template_code` does not count (it is not approved yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from string import Formatter
from typing import Any

from bot.care.occasions import NAMES
from bot.config import ConfigError

VALUES = frozenset({"address", "volunteer", "occasion", "date", "text"})


@dataclass(frozen=True)
class Template:
    name: str
    code: str
    params: dict[str, str]


def load_templates(section: dict[str, Any]) -> dict[str, Template]:
    """The approved templates of `[sms.templates]`; a ConfigError names a bad placeholder."""
    out: dict[str, Template] = {}
    for name, spec in (section.get("templates") or {}).items():
        if not isinstance(spec, dict):
            raise ConfigError(f"sms.templates.{name} must be a table")
        params = {str(k): str(v) for k, v in (spec.get("params") or {}).items()}
        for key, value in params.items():
            used = {field for _t, field, _f, _c in Formatter().parse(value) if field}
            if not used <= VALUES:
                raise ConfigError(f"sms.templates.{name}.params.{key}: unknown placeholder "
                                  f"{sorted(used - VALUES)[0]!r} (use {', '.join(sorted(VALUES))})")
        code = str(spec.get("template_code") or "").strip()
        if code:
            out[str(name)] = Template(str(name), code, params)
    return out


def candidates(kind: str, payload: dict[str, Any]) -> list[str]:
    names = []
    hint = payload.get("sms_template")
    if hint:
        names.append(str(hint))
    if payload.get("occasion"):
        names.append(f"{kind}_{payload['occasion']}")
    names.append(kind)
    return list(dict.fromkeys(names))


def choose(templates: dict[str, Template], kind: str, payload: dict[str, Any]) -> Template | None:
    for name in candidates(kind, payload):
        if name in templates:
            return templates[name]
    return None


def variables(template: Template, payload: dict[str, Any], local_now: datetime,
              max_chars: int) -> dict[str, str]:
    text = str(payload.get("text") or "").strip()
    occasion = str(payload.get("occasion") or "")
    values = {
        "address": str(payload.get("address") or ""),
        "volunteer": str(payload.get("volunteer") or ""),
        "occasion": NAMES.get(occasion) or ("生日" if occasion == "birthday" else occasion),
        "date": f"{local_now.month}月{local_now.day}日",
        "text": text.splitlines()[0] if text else "",
    }
    out = {}
    for key, pattern in template.params.items():
        value = pattern.format(**values).strip()
        out[key] = value if len(value) <= max_chars else value[: max_chars - 1] + "…"
    return out
