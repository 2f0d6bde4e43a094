"""The one HTTP app (ASGI, Starlette): webhooks of every channel and a health check.

Meant to sit behind a TLS reverse proxy; it listens on WARMLINE_HTTP_HOST:WARMLINE_HTTP_PORT
(default 127.0.0.1:8080).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def build_http_app(routes: Sequence[BaseRoute]) -> Starlette:
    return Starlette(routes=[Route("/healthz", healthz), *routes])
