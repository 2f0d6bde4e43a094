"""报表 — pick a period (and, for the county office, a township), see the charts, download the file.

The report is `make_report` (what `warmline report` and `/report` in chat build), the charts are
the HTML report's (`report_charts`), the files are the report writers' (XLSX, CSV in a zip, the
printable HTML page). A coordinator's report is their township's whatever the address says;
an admin picks the county or one township. Building runs in a worker thread with its own
session, so a county-sized report does not hold up other pages.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from bot.console.web import SECURITY_HEADERS, Page
from bot.reports.charts import default_font, report_charts
from bot.reports.chat import chat_period, summary_text
from bot.reports.config import ReportConfig
from bot.reports.model import Report
from bot.reports.periods import Period
from bot.reports.service import make_report
from bot.reports.writers import render_html, write_csv, write_xlsx
from storage.models import Role, Township

PRESETS = ("month", "last_month", "quarter", "year")
FORMATS = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "csv": "application/zip", "html": "text/html; charset=utf-8"}


def _township(page: Page) -> int | None:
    """The report's township: a coordinator's own; an admin's choice (None: the county)."""
    if page.person.role != Role.ADMIN:
        return page.person.township_id
    raw = page.request.query_params.get("township", "")
    return int(raw) if raw.isdigit() else None


def _period(page: Page) -> tuple[str, Period | None]:
    choice = (page.request.query_params.get("period") or "quarter").strip()[:40]
    today: date = page.console.app.services.today()
    try:
        return choice, chat_period(choice, today)
    except ValueError:
        return choice, None


def _build(page: Page, period: Period, township: int | None) -> Report:
    app = page.console.app
    with Session(app.db.sync_engine) as session:
        return make_report(session, app.settings, period=period, now=page.now(), township=township)


async def reports_page(page: Page) -> Response:
    choice, period = _period(page)
    township = _township(page)
    townships = list(await page.session.scalars(select(Township).order_by(Township.id)))
    values: dict[str, Any] = {"active": "reports", "choice": choice, "presets": PRESETS,
                              "townships": townships, "township": township, "report": None}
    if period is None:
        return page.render("reports.html", status_code=400, bad_period=True, **values)
    if township is not None and township not in {t.id for t in townships}:
        return page.render("message.html", status_code=404, title="not_found", text="not_found_text")

    def build() -> tuple[Report, list[str], list[tuple[str, str]]]:
        report = _build(page, period, township)
        font = default_font()
        config = ReportConfig.from_settings(page.console.app.settings)
        lines = summary_text(report, "zh", font, config.danger_followup_hours).split("\n")
        charts = [(caption, base64.b64encode(png).decode("ascii"))
                  for _key, caption, png in report_charts(report, font)]
        return report, lines, charts

    report, lines, charts = await asyncio.to_thread(build)
    choice = period.code  # the box and the downloads name the period itself, not "this quarter"
    await page.audit("read", "report", None, None, f"console {period.code} township={township or 'county'}")
    return page.render("reports.html", lines=lines, charts=charts,
                       query=urlencode({"period": choice, **({"township": township} if township and page.is_admin else {})}),
                       **{**values, "report": report, "choice": choice})


async def download_page(page: Page) -> Response:
    fmt = page.request.path_params["fmt"]
    _choice, period = _period(page)
    township = _township(page)
    if fmt not in FORMATS or period is None:
        return page.render("message.html", status_code=404, title="not_found", text="not_found_text")

    def build() -> tuple[bytes, str]:
        report = _build(page, period, township)
        name = f"report-{report.scope_label}-{period.code.replace('..', '_')}"
        with tempfile.TemporaryDirectory() as tmp:
            if fmt == "html":
                return render_html(report, default_font()).encode("utf-8"), f"{name}.html"
            out = Path(tmp) / (f"{name}.zip" if fmt == "csv" else f"{name}.xlsx")
            (write_csv if fmt == "csv" else write_xlsx)(report, out)
            return out.read_bytes(), out.name

    body, filename = await asyncio.to_thread(build)
    await page.audit("export", "report", None, None, f"console {fmt} {period.code} township={township or 'county'}")
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    return Response(body, media_type=FORMATS[fmt], headers={
        **SECURITY_HEADERS,
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"})
