"""Rendering an outbox payload as plain text, for channels without buttons (console, WeChat)."""

from __future__ import annotations

from typing import Any


def numbered_text(payload: dict[str, Any]) -> str:
    """The reply text followed by its options as '1. label' lines ('回复数字即可' is in the text)."""
    lines = [str(payload.get("text", ""))]
    for i, option in enumerate(payload.get("options") or [], start=1):
        lines.append(f"{i}. {option['label']}")
    return "\n".join(lines)
