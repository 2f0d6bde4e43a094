"""The county office's pages: 消息发送 (the outbox), 操作记录 (the audit log), 设置 (configuration).

The outbox view is `warmline outbox`'s `collect` (message text is never shown, as there);
retrying or cancelling a failed message is `storage.outbox`. The audit view reads what
`warmline audit` reads. A coordinator sees the messages to people of their township and the
entries about their township's households or by its people; an admin sees everything. Settings
are shown as the program runs with them, secrets masked, and cannot be changed here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select
from starlette.responses import RedirectResponse, Response

from bot.commands.outbox import STATUSES, collect
from bot.console.web import SECURITY_HEADERS, Page
from storage.models import AuditEntry, Household, OutboxMessage, Person, Role
from storage.outbox import cancel_failed, retry_failed
from storage.scope import visible_households

SECRET_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD", "AES", "DATABASE_URL")


def people_in_scope(page: Page) -> Select[tuple[int]] | None:
    """Whose messages and actions this person may see (None: everyone, for an admin)."""
    if page.person.role == Role.ADMIN:
        return None
    return select(Person.id).where(Person.township_id == page.person.township_id)


async def delivery_page(page: Page) -> Response:
    status = page.request.query_params.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    tz = page.console.app.settings.timezone
    limit = page.console.config.page_size
    people = people_in_scope(page)
    data: dict[str, Any] = await page.session.run_sync(
        lambda s: collect(s, status=status, limit=limit, with_text=False, tz=tz, people=people))
    ids = {r["person_id"] for r in data["rows"] if r["person_id"]}
    names = dict((await page.session.execute(select(Person.id, Person.name).where(Person.id.in_(ids)))).all())
    totals: dict[str, int] = {}
    for c in data["counts"]:
        totals[c["status"]] = totals.get(c["status"], 0) + c["count"]
    return page.render("delivery.html", active="delivery", status=status, statuses=STATUSES, data=data,
                       names=names, totals=totals)


async def _message(page: Page) -> OutboxMessage | None:
    raw = str(page.request.path_params["message_id"])
    if not raw.isdigit():
        return None
    query = select(OutboxMessage).where(OutboxMessage.id == int(raw))
    people = people_in_scope(page)
    if people is not None:
        query = query.where(OutboxMessage.person_id.in_(people))
    return await page.session.scalar(query)


async def message_action(page: Page) -> Response:
    action = page.request.path_params["action"]
    message = await _message(page)
    if message is None or action not in {"retry", "cancel"}:
        return page.render("message.html", status_code=404, title="not_found", text="not_found_text")
    if action == "retry":
        changed = await retry_failed(page.session, message.id, page.now())
    else:
        changed = await cancel_failed(page.session, message.id, page.now(), f"console person {page.person.id}")
    if changed:
        await page.audit("write", "outbox", message.id, None, action)
    outcome = "done" if changed else "not_failed"
    return RedirectResponse(f"/console/delivery?{action}={outcome}", status_code=303, headers=SECURITY_HEADERS)


async def audit_page(page: Page) -> Response:
    actor = aliased(Person)
    query = (select(AuditEntry, actor.name, Household.code)
             .outerjoin(actor, actor.id == AuditEntry.actor_id)
             .outerjoin(Household, Household.id == AuditEntry.household_id)
             .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()))
    people = people_in_scope(page)
    if people is not None:
        households = visible_households(page.person).with_only_columns(Household.id)
        query = query.where(or_(AuditEntry.household_id.in_(households), AuditEntry.actor_id.in_(people)))
    code = page.request.query_params.get("household", "").strip()[:40]
    who = page.request.query_params.get("person", "").strip()[:40]
    if code:
        query = query.where(Household.code == code)
    if who:
        query = query.where(or_(actor.name == who, actor.phone == who))
    rows = (await page.session.execute(query.limit(page.console.config.page_size * 4))).all()
    return page.render("audit.html", active="audit", rows=rows, household=code, who=who)


def _shown(name: str, value: Any) -> str:
    if any(word in name.upper() for word in SECRET_WORDS):
        return "••••••（已设置 / set）" if value else ""
    return str(value)


async def settings_page(page: Page) -> Response:
    settings = page.console.app.settings
    sections = [(name, [(k, _shown(k, v)) for k, v in sorted(values.items())])
                for name, values in sorted(settings.raw.items()) if isinstance(values, dict)]
    env = [(k, _shown(k, v)) for k, v in sorted(settings.env.items()) if k.startswith("WARMLINE_")]
    return page.render("settings.html", active="settings", sections=sections, env=env)
