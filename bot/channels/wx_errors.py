"""What a WeChat or WeCom API answer means for the message: the one place error codes are read.

A send is recorded as sent only when the platform answered errcode 0. Every other answer, and
every failure to get an answer, becomes one of the outcomes below, which the senders turn into
a `SendResult` for the delivery rules in bot/delivery/outcome.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import requests
from wechatpy.exceptions import WeChatClientException

from bot.channels.wx_token import TOKEN_ERRORS, TokenFetchError


class Outcome(enum.Enum):
    SENT = "sent"
    TOKEN = "token"  # the access token was refused even after one refresh: try again later
    QUOTA = "quota"  # a call quota is used up: back off
    WINDOW = "window"  # outside the 48-hour customer-service window: a template may still go
    UNREACHABLE = "unreachable"  # unsubscribed, blocked us, or no longer in the app
    RETRY = "retry"  # transient: platform busy, network, HTTP 5xx
    PERMANENT = "permanent"  # the request itself is wrong; sending it again cannot help


QUOTA_CODES = frozenset({45009, 45011, 45033})  # daily quota, per-minute frequency, concurrency
WINDOW_CODES = frozenset({45015, 45047})  # reply time limit passed, too many replies in a row
UNREACHABLE_CODES = frozenset({
    43004,  # the user does not follow the Official Account (unsubscribed)
    43019,  # the user put the account on the blacklist
    81013,  # WeCom: the user is not (or no longer) in the app's visible range
    60111,  # WeCom: no such user
})
RETRY_CODES = frozenset({-1, 60020})  # system busy; server IP not yet allowed (operator fixes it)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    error: str  # short, no personal data: e.g. "wechat:45015"
    errcode: int | None = None
    platform_message_id: str | None = None


def from_answer(platform: str, answer: dict) -> Verdict:
    """The verdict on an answer WeChat gave with errcode 0 (wechatpy raises for the others)."""
    msgid = answer.get("msgid")
    return Verdict(Outcome.SENT, "", 0, str(msgid) if msgid not in (None, "") else None)


def from_code(platform: str, errcode: int | None) -> Verdict:
    error = f"{platform}:{errcode if errcode is not None else 'http'}"
    if errcode is None:
        return Verdict(Outcome.RETRY, error, None)
    if errcode == 0:
        return Verdict(Outcome.SENT, "", 0)
    if errcode in TOKEN_ERRORS:
        return Verdict(Outcome.TOKEN, error, errcode)
    if errcode in QUOTA_CODES:
        return Verdict(Outcome.QUOTA, error, errcode)
    if errcode in WINDOW_CODES:
        return Verdict(Outcome.WINDOW, error, errcode)
    if errcode in UNREACHABLE_CODES:
        return Verdict(Outcome.UNREACHABLE, error, errcode)
    if errcode in RETRY_CODES:
        return Verdict(Outcome.RETRY, error, errcode)
    return Verdict(Outcome.PERMANENT, error, errcode)


def from_exception(platform: str, exc: BaseException) -> Verdict:
    """The verdict on a call that raised: a platform error code, a token failure or the network."""
    if isinstance(exc, TokenFetchError):
        # the token endpoint itself failed (bad secret, IP not allowed, network): keep the message
        return Verdict(Outcome.RETRY, f"{platform}:token:{exc.errcode if exc.errcode is not None else 'http'}",
                       exc.errcode)
    if isinstance(exc, WeChatClientException):
        code = exc.errcode
        if code is None:
            return Verdict(Outcome.RETRY, f"{platform}:http", None)  # HTTP 4xx/5xx from the API
        return from_code(platform, int(code))
    if isinstance(exc, requests.RequestException | TimeoutError | ConnectionError):
        return Verdict(Outcome.RETRY, f"{platform}:{type(exc).__name__}"[:60], None)
    return Verdict(Outcome.RETRY, f"{platform}:{type(exc).__name__}"[:60], None)
