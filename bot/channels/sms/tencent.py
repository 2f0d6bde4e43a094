"""Tencent Cloud SMS (腾讯云短信, API 2021-01-11) over its documented HTTP API.

Sending: `SendSms` as a JSON POST signed with TC3-HMAC-SHA256 — a canonical request over the
content-type and host headers and the body's SHA-256, a string to sign scoped to
`<date>/sms/tc3_request`, and a key derived from `TC3<SecretKey>` through the date, the service
and `tc3_request`. Template variables are positional (`TemplateParamSet`), so the order of a
template's `params` in `[sms.templates]` is the order of {1}, {2}, … in the approved template.

Callbacks: Tencent posts status reports as a JSON array (`report_status` SUCCESS / FAIL, `sid`
= the SerialNo we got) and a reply as one JSON object (`mobile`, `text`, `time`), and expects
`{"result": 0, "errmsg": "OK"}` back. Like Alibaba, it does not sign them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

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

NAME = "tencent"
DEFAULT_API_BASE = "https://sms.tencentcloudapi.com"
API_VERSION = "2021-01-11"
SERVICE = "sms"
REGION = "ap-guangzhou"
CONTENT_TYPE = "application/json; charset=utf-8"

CODES = ErrorCodes(
    ok="Ok",
    unreachable=frozenset({
        "InvalidParameterValue.IncorrectPhoneNumber",
        "FailedOperation.PhoneNumberInBlacklist",  # the person unsubscribed at the operator
        "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
    }),
    retry_seconds={
        "LimitExceeded.PhoneNumberThirtySecondLimit": 30.0,
        "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
        "LimitExceeded.PhoneNumberDailyLimit": 6 * 3600.0,
        "LimitExceeded.DeliveryFrequencyLimit": 3600.0,
        "LimitExceeded.AppDailyLimit": 6 * 3600.0,
        "FailedOperation.InsufficientBalanceInSmsPackage": 1800.0,
        "RequestLimitExceeded": 2.0,
    },
    retry_prefixes=("InternalError", "LimitExceeded"),
    prefix_retry_seconds=60.0,
)



def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def tc3_authorization(secret_id: str, secret_key: str, host: str, body: bytes, timestamp: int) -> str:
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(["POST", "/", "", f"content-type:{CONTENT_TYPE}", f"host:{host}", "",
                           "content-type;host", hashlib.sha256(body).hexdigest()])
    scope = f"{day}/{SERVICE}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), day), SERVICE), "tc3_request")
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={sig}"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CallbackRejected("not JSON") from exc


def _mobile(raw: Any) -> str:
    digits = "".join(ch for ch in str(raw or "") if ch.isdigit())
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


class TencentSms:
    """One SecretId/SecretKey pair and one SMS application (SmsSdkAppId)."""

    name = NAME

    def __init__(self, secret_id: str, secret_key: str, app_id: str, *,
                 api_base: str = DEFAULT_API_BASE, timeout: float = 8.0) -> None:
        self.secret_id = secret_id
        self._secret = secret_key
        self.app_id = app_id
        self._base = api_base.rstrip("/")
        self._host = urlsplit(self._base).netloc
        self._client = httpx.AsyncClient(timeout=timeout)

    async def send(self, message: TemplateSms) -> SendAnswer:
        body = json.dumps({
            "PhoneNumberSet": [f"+86{message.phone}"], "SmsSdkAppId": self.app_id,
            "SignName": message.sign_name, "TemplateId": message.template_code,
            "TemplateParamSet": list(message.params.values()), "SessionContext": message.out_id,
        }, ensure_ascii=False).encode()
        stamp = int(datetime.now(UTC).timestamp())
        headers = {"Content-Type": CONTENT_TYPE, "Host": self._host, "X-TC-Action": "SendSms",
                   "X-TC-Version": API_VERSION, "X-TC-Region": REGION, "X-TC-Timestamp": str(stamp),
                   "Authorization": tc3_authorization(self.secret_id, self._secret, self._host, body, stamp)}
        try:
            response = await self._client.post(f"{self._base}/", content=body, headers=headers)
        except httpx.TimeoutException:
            return SendAnswer(Verdict.RETRY, "timeout")
        except httpx.TransportError as exc:
            return SendAnswer(Verdict.RETRY, f"network {type(exc).__name__}")
        try:
            data = (response.json() or {}).get("Response") or {}
        except ValueError:
            data = {}
        if not data:
            return SendAnswer(Verdict.RETRY, f"http {response.status_code}", retry_after=30.0)
        if data.get("Error"):
            code = str(data["Error"].get("Code") or "Error")
        else:
            statuses = data.get("SendStatusSet") or [{}]
            status = statuses[0]
            code = str(status.get("Code") or "no status")
            if code.lower() == "ok":
                return SendAnswer(Verdict.SENT, code, message_id=status.get("SerialNo") or None)
        verdict, retry_after = CODES.verdict(code)
        return SendAnswer(verdict, code, retry_after=retry_after)

    def receipts(self, body: bytes, headers: dict[str, str]) -> list[Receipt]:
        data = _json(body)
        if not isinstance(data, list):
            raise CallbackRejected("not a JSON array")
        out = []
        for item in data:
            if not isinstance(item, dict) or "mobile" not in item or "report_status" not in item:
                raise CallbackRejected("not a status report")
            out.append(Receipt(phone=_mobile(item["mobile"]), delivered=item["report_status"] == "SUCCESS",
                               code=str(item.get("errmsg") or ""), message_id=str(item.get("sid") or "") or None,
                               out_id=None))
        return out

    def replies(self, body: bytes, headers: dict[str, str]) -> list[UpMessage]:
        data = _json(body)
        items = data if isinstance(data, list) else [data]
        out = []
        for item in items:
            if not isinstance(item, dict) or "mobile" not in item or "text" not in item:
                raise CallbackRejected("not a reply")
            ref = f"{_mobile(item['mobile'])}:{item.get('time')}"
            out.append(UpMessage(phone=_mobile(item["mobile"]), text=str(item["text"]), ref=ref))
        return out

    def acknowledgement(self) -> dict[str, Any]:
        return {"result": 0, "errmsg": "OK"}

    async def aclose(self) -> None:
        await self._client.aclose()
