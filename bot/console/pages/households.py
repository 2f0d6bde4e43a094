"""家庭 — find a household in one's area, read its card, export its whole file.

The list is `storage.scope.visible_households` (a coordinator: their township; an admin: the
county). The card is the chat's own card (`MyFamilies.card`), so the web shows exactly what a
coordinator reads in chat; the export is `warmline export family`'s workbook. Opening a card and
exporting a file are written to the audit log, like in chat and on the command line. A household
outside the person's area answers exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from bot.commands.family_file import workbook_bytes
from bot.console.web import SECURITY_HEADERS, Page
from dialogs.engine import catalog
from dialogs.my_families import MyFamilies
from storage.family_file import collect
from storage.models import Household
from storage.queries import household_labels, last_contact
from storage.scope import visible_households


def not_found(page: Page) -> Response:
    return page.render("message.html", status_code=404, title="not_found", text="not_found_text")


async def list_page(page: Page) -> Response:
    query = page.request.query_params.get("q", "").strip()[:40]
    try:
        number = max(1, int(page.request.query_params.get("p", "1")))
    except ValueError:
        number = 1
    households = list(await page.session.scalars(visible_households(page.person).order_by(Household.code)))
    labels = await household_labels(page.session, households)
    if query:
        wanted = query.lower()
        households = [h for h in households if wanted in labels[h.id].lower()]
    size = page.console.config.page_size
    pages = max(1, -(-len(households) // size))
    number = min(number, pages)
    shown = households[(number - 1) * size:number * size]
    last = await last_contact(page.session, [h.id for h in shown])
    today = page.console.app.services.today()
    rows = [{"code": h.code, "label": labels[h.id].removeprefix(h.code).strip(),
             "last": last.get(h.id), "days": (today - last[h.id]).days if h.id in last else None}
            for h in shown]
    return page.render("households.html", active="households", q=query, rows=rows,
                       total=len(households), number=number, pages=pages)


async def card_page(page: Page) -> Response:
    household = await page.household(page.request.path_params["code"])
    if household is None:
        return not_found(page)
    families = MyFamilies(page.step_context(), {})
    lines = (await families.card(household)).split("\n")
    if lines and lines[-1] == catalog.t("families.actions"):
        lines = lines[:-1]  # "what to do for this household?" is a chat question, with buttons
    await page.audit("read", "household_card", household.id, household.id, "console")
    return page.render("card.html", active="households", household=household, title=lines[0],
                       lines=lines[1:])


async def export_page(page: Page) -> Response:
    household = await page.household(page.request.path_params["code"])
    if household is None:
        return not_found(page)
    now = page.now()
    data: dict[str, Any] = await page.session.run_sync(lambda s: collect(s, household))
    body = workbook_bytes({"exported_at": page.console.app.services.local(now).isoformat(timespec="seconds"),
                           **data})
    await page.audit("export", "household", household.id, household.id, "console format=xlsx")
    return Response(body, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={**SECURITY_HEADERS,
                             "Content-Disposition": f'attachment; filename="family-{safe_name(household.code)}.xlsx"'})


def safe_name(text: str) -> str:
    """A household code as a file name: letters, digits, - and _ only (codes come from imports)."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in text)[:40] or "household"
