"""Template messages: which approved template carries a message outside the 48-hour window.

Configuration (`[wechat.templates.NAME]` in bot/defaults/wechat.toml) names each template and
how its fields are filled. A message looks for the first configured name among: the name its
payload asks for (`payload["template"]["name"]`), `<kind>_<occasion>`, `<kind>_<activity_type>`,
`<kind>`, and `default`. Field values are format strings over the message's own words.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger("warmline.wechat.templates")


@dataclass(frozen=True)
class TemplateMessage:
    name: str
    template_id: str
    data: dict[str, dict[str, str]]
    url: str | None = None


def candidates(kind: str, payload: dict[str, Any]) -> list[str]:
    """Template names to try for a message, most specific first."""
    names: list[str] = []
    hint = payload.get("template")
    if isinstance(hint, dict) and hint.get("name"):
        names.append(str(hint["name"]))
    elif isinstance(hint, str) and hint:
        names.append(hint)
    for key in ("occasion", "activity_type"):
        if payload.get(key):
            names.append(f"{kind}_{payload[key]}")
    names += [kind, "default"]
    return list(dict.fromkeys(names))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def render(templates: dict[str, Any], kind: str, payload: dict[str, Any],
           local_now: datetime) -> TemplateMessage | None:
    """The template message for this payload, or None when no configured template fits it."""
    text = str(payload.get("text") or "").strip()
    title = text.splitlines()[0] if text else ""
    hint = payload.get("template") if isinstance(payload.get("template"), dict) else {}
    values: dict[str, str] = {
        "text": text, "title": title,
        "date": f"{local_now.year}年{local_now.month}月{local_now.day}日",
        "time": local_now.strftime("%Y-%m-%d %H:%M"),
    }
    values.update({str(k): str(v) for k, v in (hint.get("values") or {}).items()})
    for name in candidates(kind, payload):
        spec = templates.get(name)
        if not isinstance(spec, dict) or not spec.get("template_id"):
            continue
        limit = int(spec.get("max_chars", 20))
        data: dict[str, dict[str, str]] = {}
        try:
            for field, pattern in (spec.get("fields") or {}).items():
                data[str(field)] = {"value": _cut(str(pattern).format(**values), limit)}
        except (KeyError, IndexError, ValueError) as exc:
            log.warning("template %s cannot be filled: %s", name, type(exc).__name__)
            continue
        return TemplateMessage(name, str(spec["template_id"]), data, spec.get("url") or None)
    return None
