"""A fake Alibaba Cloud SMS API on 127.0.0.1 that checks requests as the real one does.

`POST /` with the form-encoded `SendSms` parameters. It recomputes the HMAC-SHA1 signature
from the parameters with its own code (not Warmline's), refuses a reused SignatureNonce, a
Timestamp more than 15 minutes off, an unknown AccessKeyId, and answers with the documented
bodies: `{"Code": "OK", "BizId": …}` on success, the documented error codes otherwise
(isv.MOBILE_NUMBER_ILLEGAL, isv.SMS_TEMPLATE_ILLEGAL, isv.SMS_SIGNATURE_ILLEGAL,
isv.TEMPLATE_MISSING_PARAMETERS, isv.BUSINESS_LIMIT_CONTROL, …). It keeps what it accepted,
and can post receipts (SmsReport) and replies (SmsUp) to a callback URL as Alibaba pushes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

KEY_ID = "LTAI-fictional-test-key"
KEY_SECRET = "fictional-test-secret-0123456789"
SIGN_NAME = "暖心关爱"


@dataclass(frozen=True)
class Accepted:
    phone: str
    template_code: str
    params: dict[str, str]
    out_id: str
    biz_id: str
    at: float


def _encode(value: str) -> str:
    # Alibaba's own samples: URL-encode, then fix the three characters Java's encoder differs on.
    return urllib.parse.quote_plus(value).replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def expected_signature(secret: str, params: dict[str, str]) -> str:
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(_encode(k) + "=" + _encode(v) for k, v in pairs)
    to_sign = "POST&" + _encode("/") + "&" + _encode(canonical)
    mac = hmac.new((secret + "&").encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class _Served:
    """A real HTTP server on 127.0.0.1 in a thread; subclasses answer `handle(headers, body)`."""

    _server: ThreadingHTTPServer | None = None

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def start(self) -> Any:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = fake.handle({k.lower(): v for k, v in self.headers.items()}, body)
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class FakeAliyunSms(_Served):
    def __init__(self, *, templates: dict[str, set[str]] | None = None, per_number_per_minute: int = 1) -> None:
        # approved template code -> the variables it needs
        self.templates = templates if templates is not None else {}
        self.per_number_per_minute = per_number_per_minute
        self.accepted: list[Accepted] = []
        self.refused: list[str] = []  # codes of refused requests, in order
        self.nonces: set[str] = set()
        self.force_code: str | None = None  # answer the next request with this code
        self._lock = threading.Lock()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        return self.answer(dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)))

    def answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            status, body = self._answer(form)
            if body.get("Code") != "OK":
                self.refused.append(str(body.get("Code")))
            return status, body

    def _error(self, status: int, code: str) -> tuple[int, dict[str, Any]]:
        return status, {"Code": code, "Message": code, "RequestId": uuid.uuid4().hex.upper()}

    def _answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("AccessKeyId") != KEY_ID:
            return self._error(404, "InvalidAccessKeyId.NotFound")
        if form.get("SignatureMethod") != "HMAC-SHA1" or form.get("SignatureVersion") != "1.0":
            return self._error(400, "InvalidSignatureMethod")
        if not hmac.compare_digest(form.get("Signature", ""), expected_signature(KEY_SECRET, form)):
            return self._error(400, "SignatureDoesNotMatch")
        try:
            stamp = datetime.strptime(form.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self._error(400, "InvalidTimeStamp.Format")
        if abs((datetime.now(UTC) - stamp).total_seconds()) > 900:
            return self._error(400, "InvalidTimeStamp.Expired")
        nonce = form.get("SignatureNonce", "")
        if not nonce or nonce in self.nonces:
            return self._error(400, "SignatureNonceUsed")
        self.nonces.add(nonce)
        if form.get("Action") != "SendSms" or form.get("Version") != "2017-05-25":
            return self._error(400, "InvalidAction.NotFound")
        if self.force_code:
            code, self.force_code = self.force_code, None
            return self._error(200, code)
        phone = form.get("PhoneNumbers", "")
        if not (len(phone) == 11 and phone.isdigit() and phone.startswith("1")):
            return self._error(200, "isv.MOBILE_NUMBER_ILLEGAL")
        if form.get("SignName") != SIGN_NAME:
            return self._error(200, "isv.SMS_SIGNATURE_ILLEGAL")
        code = form.get("TemplateCode", "")
        if code not in self.templates:
            return self._error(200, "isv.SMS_TEMPLATE_ILLEGAL")
        try:
            params = json.loads(form.get("TemplateParam") or "{}")
        except ValueError:
            return self._error(200, "isv.INVALID_JSON_PARAM")
        if not self.templates[code] <= set(params):
            return self._error(200, "isv.TEMPLATE_MISSING_PARAMETERS")
        recent = [a for a in self.accepted if a.phone == phone and time.time() - a.at < 60]
        if len(recent) >= self.per_number_per_minute:
            return self._error(200, "isv.BUSINESS_LIMIT_CONTROL")
        biz_id = f"{len(self.accepted) + 900000}^0"
        self.accepted.append(Accepted(phone, code, params, form.get("OutId", ""), biz_id, time.time()))
        return 200, {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": uuid.uuid4().hex.upper()}

    # -------------------------------------------------------------- callbacks

    def report_body(self, accepted: Accepted, *, delivered: bool = True, code: str = "DELIVERED") -> list[dict[str, Any]]:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        return [{"phone_number": accepted.phone, "send_time": stamp, "report_time": stamp,
                 "success": delivered, "err_code": code, "err_msg": "用户接收成功" if delivered else "失败",
                 "sms_size": "1", "biz_id": accepted.biz_id, "out_id": accepted.out_id}]

    def up_body(self, phone: str, text: str, sequence_id: int) -> list[dict[str, Any]]:
        return [{"phone_number": phone, "send_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
                 "content": text, "sign_name": SIGN_NAME, "dest_code": "8821", "sequence_id": sequence_id}]

    @staticmethod
    async def push(client: httpx.AsyncClient, url: str, body: list[dict[str, Any]]) -> httpx.Response:
        """Post as Alibaba's HTTP batch push does: a JSON array, expecting {"code": 0}."""
        return await client.post(url, content=json.dumps(body, ensure_ascii=False).encode(),
                                 headers={"Content-Type": "application/json"})


# ------------------------------------------------------------------ Tencent Cloud

TC_SECRET_ID = "AKID-fictional-test-id"
TC_SECRET_KEY = "fictional-tencent-secret-key"
TC_APP_ID = "1400000001"


def tc3_expected(secret_key: str, host: str, body: bytes, timestamp: int) -> str:
    """Tencent's TC3-HMAC-SHA256 signature, written from its documentation for the fake."""
    day = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    hashed_body = hashlib.sha256(body).hexdigest()
    canonical_request = ("POST\n/\n\n" + "content-type:application/json; charset=utf-8\n"
                         + "host:" + host + "\n\n" + "content-type;host\n" + hashed_body)
    string_to_sign = ("TC3-HMAC-SHA256\n" + str(timestamp) + "\n" + day + "/sms/tc3_request\n"
                      + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest())

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    signing_key = mac(mac(mac(("TC3" + secret_key).encode("utf-8"), day), "sms"), "tc3_request")
    return hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


class FakeTencentSms(_Served):
    """SendSms 2021-01-11 with TC3-HMAC-SHA256 checked; the documented Response bodies."""

    def __init__(self, *, templates: dict[str, int] | None = None) -> None:
        self.templates = templates if templates is not None else {}  # TemplateId -> number of params
        self.accepted: list[Accepted] = []
        self.refused: list[str] = []

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        return 200, {"Response": self.answer(headers, body)}

    def _error(self, code: str) -> dict[str, Any]:
        self.refused.append(code)
        return {"Error": {"Code": code, "Message": code}, "RequestId": uuid.uuid4().hex}

    def answer(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        auth = headers.get("authorization", "")
        try:
            stamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            return self._error("InvalidParameter")
        if abs(time.time() - stamp) > 300:
            return self._error("AuthFailure.SignatureExpire")
        if f"Credential={TC_SECRET_ID}/" not in auth:
            return self._error("AuthFailure.SecretIdNotFound")
        signature = auth.rsplit("Signature=", 1)[-1]
        if not hmac.compare_digest(signature, tc3_expected(TC_SECRET_KEY, headers.get("host", ""), body, stamp)):
            return self._error("AuthFailure.SignatureFailure")
        if headers.get("x-tc-action") != "SendSms" or headers.get("x-tc-version") != "2021-01-11":
            return self._error("InvalidAction")
        request = json.loads(body)
        phone = str(request["PhoneNumberSet"][0])
        template = str(request.get("TemplateId"))
        params = [str(p) for p in request.get("TemplateParamSet") or []]
        if request.get("SmsSdkAppId") != TC_APP_ID:
            return self._error("InvalidParameterValue.SdkAppIdNotExist")
        if template not in self.templates:
            return self._error("FailedOperation.TemplateIncorrectOrUnapproved")
        if len(params) != self.templates[template]:
            return self._error("InvalidParameterValue.TemplateParameterFormatError")
        if not (phone.startswith("+861") and len(phone) == 14):
            status = {"SerialNo": "", "PhoneNumber": phone, "Fee": 0, "SessionContext": "",
                      "Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "bad number", "IsoCode": "CN"}
            self.refused.append(status["Code"])
            return {"SendStatusSet": [status], "RequestId": uuid.uuid4().hex}
        serial = f"2645:{len(self.accepted) + 1000}"
        self.accepted.append(Accepted(phone[3:], template, {str(i): p for i, p in enumerate(params, 1)},
                                      str(request.get("SessionContext") or ""), serial, time.time()))
        status = {"SerialNo": serial, "PhoneNumber": phone, "Fee": 1,
                  "SessionContext": request.get("SessionContext"), "Code": "Ok",
                  "Message": "send success", "IsoCode": "CN"}
        return {"SendStatusSet": [status], "RequestId": uuid.uuid4().hex}

    @staticmethod
    def report_body(accepted: Accepted, *, delivered: bool = True) -> list[dict[str, Any]]:
        return [{"user_receive_time": time.strftime("%Y-%m-%d %H:%M:%S"), "nationcode": "86",
                 "mobile": accepted.phone, "report_status": "SUCCESS" if delivered else "FAIL",
                 "errmsg": "DELIVRD" if delivered else "MK:0001", "description": "用户短信送达成功" if delivered
                 else "用户短信送达失败", "sid": accepted.biz_id}]

    @staticmethod
    def reply_body(phone: str, text: str, at: int) -> dict[str, Any]:
        return {"extend": "", "mobile": phone, "nationcode": "86", "sign": "暖心关爱", "text": text, "time": at}
