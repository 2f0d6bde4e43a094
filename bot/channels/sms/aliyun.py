"""Alibaba Cloud SMS (阿里云短信服务, dysmsapi 2017-05-25) over its documented RPC HTTP API.

Sending: `SendSms` as a signed POST — the parameters sorted and percent-encoded (RFC 3986),
the string `POST&%2F&<encoded query>` signed with HMAC-SHA1 under `AccessKeySecret&`, with a
fresh `SignatureNonce` and a UTC `Timestamp` each time (the provider refuses a nonce it has seen
and a timestamp more than 15 minutes off). The answer's `Code` is sorted into a verdict.

Callbacks: in "HTTP 批量推送" mode Alibaba posts JSON arrays — `SmsReport` (delivery receipts)
and `SmsUp` (replies) — and re-pushes until it gets HTTP 200 with `{"code": 0, ...}`. Alibaba
signs neither, so the channel guards its callback URLs itself (see bot/channels/sms/__init__.py).

The SDK (`alibabacloud_dysmsapi20170525`) does the same signing with a synchronous stack and a
dozen dependencies; the documented HTTP API with httpx keeps sending non-blocking and lets the
tests run the real request against a fake server that checks the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from bot.channels.sms.provider import (
    CallbackRejected,
    ErrorCodes,
    Receipt,
    SendAnswer,
    TemplateSms,
    UpMessage,
    Verdict,
)

NAME = "aliyun"
DEFAULT_API_BASE = "https://dysmsapi.aliyuncs.com"
API_VERSION = "2017-05-25"
REGION = "cn-hangzhou"

# Codes from the SendSms error list, by what Warmline does about them.
CODES = ErrorCodes(
    ok="OK",
    unreachable=frozenset({
        "isv.MOBILE_NUMBER_ILLEGAL",  # not a valid mainland mobile number
        "isv.MOBILE_COUNT_OVER_LIMIT",
    }),
    retry_seconds={
        "isv.BUSINESS_LIMIT_CONTROL": 3600.0,  # per-number frequency limit (minute/hour/day)
        "isv.DAY_LIMIT_CONTROL": 6 * 3600.0,  # daily quota of the account
        "isv.AMOUNT_NOT_ENOUGH": 1800.0,  # balance used up: someone tops it up
        "isv.OUT_OF_SERVICE": 1800.0,  # account suspended for arrears
        "Throttling.User": 2.0,
        "Throttling": 2.0,
    },
    retry_prefixes=("isp.", "Throttling", "ServiceUnavailable", "InternalError"),
    prefix_retry_seconds=30.0,
)


def percent(text: str) -> str:
    """RFC 3986 encoding as Alibaba's signature requires: only A-Z a-z 0-9 - _ . ~ stay."""
    return quote(text, safe="~")


def string_to_sign(method: str, params: dict[str, str]) -> str:
    query = "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(params.items()))
    return f"{method}&{percent('/')}&{percent(query)}"


def signature(secret: str, method: str, params: dict[str, str]) -> str:
    digest = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()



def _records(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CallbackRejected("not JSON") from exc
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise CallbackRejected("not a JSON array of objects")
    return data


class AliyunSms:
    """One AccessKey pair and one HTTP connection pool."""

    name = NAME

    def __init__(self, access_key_id: str, access_key_secret: str, *, api_base: str = DEFAULT_API_BASE,
                 timeout: float = 8.0) -> None:
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self._client = httpx.AsyncClient(base_url=api_base.rstrip("/"), timeout=timeout)

    def signed_params(self, message: TemplateSms) -> dict[str, str]:
        params = {
            "AccessKeyId": self.access_key_id, "Action": "SendSms", "Format": "JSON",
            "RegionId": REGION, "SignatureMethod": "HMAC-SHA1", "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0", "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION, "PhoneNumbers": message.phone, "SignName": message.sign_name,
            "TemplateCode": message.template_code, "OutId": message.out_id,
            "TemplateParam": json.dumps(message.params, ensure_ascii=False, separators=(",", ":")),
        }
        params["Signature"] = signature(self._secret, "POST", params)
        return params

    async def send(self, message: TemplateSms) -> SendAnswer:
        try:
            response = await self._client.post("/", data=self.signed_params(message))
        except httpx.TimeoutException:
            return SendAnswer(Verdict.RETRY, "timeout")
        except httpx.TransportError as exc:
            return SendAnswer(Verdict.RETRY, f"network {type(exc).__name__}")
        try:
            data = response.json()
        except ValueError:
            data = {}
        code = str(data.get("Code") or f"http {response.status_code}")
        if not data and response.status_code >= 500:
            return SendAnswer(Verdict.RETRY, code, retry_after=30.0)
        verdict, retry_after = CODES.verdict(code)
        return SendAnswer(verdict, code, message_id=data.get("BizId") or None, retry_after=retry_after)

    def receipts(self, body: bytes, headers: dict[str, str]) -> list[Receipt]:
        out = []
        for item in _records(body):
            if "phone_number" not in item or "success" not in item:
                raise CallbackRejected("not an SmsReport")
            out.append(Receipt(phone=str(item["phone_number"]), delivered=item["success"] is True,
                               code=str(item.get("err_code") or ""), message_id=_text(item.get("biz_id")),
                               out_id=_text(item.get("out_id"))))
        return out

    def replies(self, body: bytes, headers: dict[str, str]) -> list[UpMessage]:
        out = []
        for item in _records(body):
            if "phone_number" not in item or "content" not in item:
                raise CallbackRejected("not an SmsUp")
            ref = _text(item.get("sequence_id")) or f"{item.get('phone_number')}:{item.get('send_time')}"
            out.append(UpMessage(phone=str(item["phone_number"]), text=str(item["content"]), ref=ref,
                                 extra={"dest_code": item.get("dest_code")}))
        return out

    def acknowledgement(self) -> dict[str, Any]:
        return {"code": 0, "msg": "接收成功"}

    async def aclose(self) -> None:
        await self._client.aclose()


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
