"""What every SMS provider module offers the channel: send one template message, read callbacks.

Mainland SMS carries only provider-approved templates filled with variables, so a message here
is a template code plus variables, never free text. A provider module (Alibaba Cloud first,
Tencent Cloud beside it) only translates: it signs and sends the request its provider documents,
reads the delivery receipts (状态报告) and replies (上行短信) its provider posts, and sorts the
provider's error codes into the verdicts the delivery worker acts on. Consent, quiet hours,
frequency limits and which template fits a message are the channel's business, the same for all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol


class Verdict(Enum):
    """What an answer from the provider means for the outbox row."""

    SENT = "sent"  # accepted; a receipt follows later
    RETRY = "retry"  # try again later (rate, quota, provider trouble)
    UNREACHABLE = "unreachable"  # this number cannot get SMS: stop using it, tell the volunteer
    BROKEN = "broken"  # our side is wrong (template, signature name, keys): an operator must act


@dataclass(frozen=True)
class TemplateSms:
    phone: str  # 11 digits, mainland
    sign_name: str
    template_code: str
    params: dict[str, str]
    out_id: str  # our reference, echoed back in receipts


@dataclass(frozen=True)
class SendAnswer:
    verdict: Verdict
    code: str  # the provider's own code, for the outbox's last error
    message_id: str | None = None  # BizId / SerialNo: what receipts refer to
    retry_after: float | None = None


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt: did the handset get the message?"""

    phone: str
    delivered: bool
    code: str
    message_id: str | None
    out_id: str | None


@dataclass(frozen=True)
class UpMessage:
    """A text a family member sent to our SMS number."""

    phone: str
    text: str
    ref: str  # the provider's id for this message, for dedupe of its re-pushes
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorCodes:
    """A provider's error codes sorted by what Warmline does about them; anything not listed
    (template or signature not approved, keys, parameters) is BROKEN: retrying cannot help."""

    ok: str
    unreachable: frozenset[str]
    retry_seconds: dict[str, float]
    retry_prefixes: tuple[str, ...]
    prefix_retry_seconds: float

    def verdict(self, code: str) -> tuple[Verdict, float | None]:
        if code.lower() == self.ok.lower():
            return Verdict.SENT, None
        if code in self.unreachable:
            return Verdict.UNREACHABLE, None
        if code in self.retry_seconds:
            return Verdict.RETRY, self.retry_seconds[code]
        if code.startswith(self.retry_prefixes):
            return Verdict.RETRY, self.prefix_retry_seconds
        return Verdict.BROKEN, None


class CallbackRejected(Exception):
    """The body is not what the provider posts (wrong shape or signature)."""


class SmsProvider(Protocol):
    name: str

    async def send(self, message: TemplateSms) -> SendAnswer: ...

    def receipts(self, body: bytes, headers: dict[str, str]) -> list[Receipt]: ...

    def replies(self, body: bytes, headers: dict[str, str]) -> list[UpMessage]: ...

    def acknowledgement(self) -> dict[str, Any]:
        """The JSON body the provider expects back, so it stops re-pushing."""
        ...

    async def aclose(self) -> None: ...
