"""The web console for coordinators and the county office, served by `warmline run` at /console.

Server-rendered pages (Jinja2) and plain forms: no front-end build, works without JavaScript
(a few lines of it refresh live counts). Every page goes through `Console.page` (web.py), which
signs people in and out and checks CSRF; pages call the same functions chat and the CLI call.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.app import App
from bot.console.pages import households, imports
from bot.console.pages.sign_in import SignIn
from bot.console.pages.today import today_page
from bot.console.web import HERE, Console


def console_routes(app: App) -> list[BaseRoute]:
    console = Console(app)
    sign_in = SignIn(console)
    page = console.page
    routes: list[BaseRoute] = [
        Route("/", page(today_page), name="today"),
        Route("/households", page(households.list_page)),
        Route("/households/{code}", page(households.card_page)),
        Route("/households/{code}/export", page(households.export_page), methods=["POST"]),
        Route("/imports", page(imports.imports_page)),
        Route("/imports/preview", page(imports.preview_page), methods=["POST"]),
        Route("/imports/confirm", page(imports.confirm_page), methods=["POST"]),
        Route("/imports/template/{kind}/{fmt}", page(imports.template_page)),
        Route("/sign-in", sign_in.code_page, methods=["GET", "POST"]),
        Route("/sign-in/{token}", sign_in.link_page, methods=["GET", "POST"]),
        Route("/sign-out", page(sign_in.sign_out), methods=["POST"]),
        Route("/sign-out-everywhere", page(sign_in.sign_out_everywhere), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return [Mount("/console", routes=routes)]
