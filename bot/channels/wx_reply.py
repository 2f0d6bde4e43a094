"""Passive replies (the XML answered in the HTTP response), built so no text can change their shape.

wechatpy's reply classes put each value inside `<![CDATA[…]]>` as it is; a family's words that
contain `]]>` would end the section and let the rest be read as XML (a second `<MsgType>`, say).
Here every value goes through `cdata()`, which splits the section around each `]]>` so the
parser reads the same characters back, and drops the control characters XML 1.0 cannot hold.
"""

from __future__ import annotations

import re
import time

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def cdata(value: object) -> str:
    """`value` as one or more CDATA sections that read back as exactly its text."""
    text = _NOT_XML.sub("", str(value))
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, from_user: str, content: str, *, agent_id: int | None = None,
               now: float | None = None) -> str:
    """A text message reply; `agent_id` is set for WeCom (its replies name the app)."""
    created = int(now if now is not None else time.time())
    agent = f"<AgentID>{int(agent_id)}</AgentID>" if agent_id is not None else ""
    return (f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{cdata(content)}</Content>{agent}</xml>")
