"""The web console for coordinators and the county office, served by `warmline run` at /console.

Server-rendered pages (Jinja2) and plain forms: no front-end build, works without JavaScript
(a few lines of it refresh live counts). Every page goes through `Console.page` (web.py), which
signs people in and out and checks CSRF; pages call the same functions chat and the CLI call.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.app import App
from bot.console.pages import activities, households, imports, office, reports
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
        Route("/activities", page(activities.list_page)),
        Route("/activities/new", page(activities.compose_page), methods=["GET", "POST"]),
        Route("/activities/{activity_id}", page(activities.detail_page)),
        Route("/activities/{activity_id}/counts", page(activities.counts_json)),
        Route("/activities/{activity_id}/attendance", page(activities.attendance_page), methods=["POST"]),
        Route("/reports", page(reports.reports_page)),
        Route("/reports/download/{fmt}", page(reports.download_page)),
        Route("/delivery", page(office.delivery_page)),
        Route("/delivery/{message_id}/{action}", page(office.message_action), methods=["POST"]),
        Route("/audit", page(office.audit_page)),
        Route("/settings", page(office.settings_page)),
        Route("/sign-in", sign_in.code_page, methods=["GET", "POST"]),
        Route("/sign-in/{token}", sign_in.link_page, methods=["GET", "POST"]),
        Route("/sign-out", page(sign_in.sign_out), methods=["POST"]),
        Route("/sign-out-everywhere", page(sign_in.sign_out_everywhere), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return [Mount("/console", routes=routes)]
