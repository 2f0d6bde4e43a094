"""活动 — compose an activity, watch the answers come in, mark who came.

Composing asks for what 发布活动 asks in chat and checks it with the same code: the time is read
by `read_when`, places by `read_capacity`, the audience offered is `audiences_for` and checked
by `checked_audience` (in `create_activity`), the preview counts people per channel with
`preview`, and saving and sending is `create_activity` — the very function the chat dialog
saves with. Error messages are the chat's own words. Counts are `storage.activity_stats`
(what 活动管理 and `warmline activities` show); attendance is `mark_attendance`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from starlette.responses import JSONResponse, RedirectResponse, Response

from bot.console.web import SECURITY_HEADERS, Page
from dialogs.activity_create import (
    MAX_MESSAGE,
    MAX_PLACE,
    MAX_TITLE,
    channel_name,
    create_activity,
    read_capacity,
    read_when,
)
from dialogs.engine import catalog
from domain.invitations import (
    ACTIVITY_TYPES,
    CUSTOM,
    attendance_list,
    attendance_open,
    describe,
    mark_attendance,
    preview,
    type_name,
)
from storage.activity_stats import ALL_CHANNELS, count_query, fold_counts, visible_activities
from storage.audience import AudienceKind, AudienceNotAllowed, audiences_for, needs_township_choice
from storage.models import Activity, Invitation, Person, Township
from storage.scope import visible_households

FIELDS = ("type", "title", "when", "place", "capacity", "audience", "township", "households",
          "message", "send_at")
COUNT_KEYS = ("invited", "yes", "waitlisted", "no", "maybe", "no_answer", "attended")


def _chat(key: str) -> tuple[str, dict[str, Any]]:
    return f"activity_create.{key}", {}


async def read_compose(page: Page) -> tuple[dict[str, Any], dict[str, tuple[str, dict[str, Any]]]]:
    """The form as the chat dialog's data, and per field the chat catalogue key of its problem."""
    services = page.console.app.services
    person = page.person
    d: dict[str, Any] = {}
    errors: dict[str, tuple[str, dict[str, Any]]] = {}
    kind = page.field("type")
    if kind not in (*ACTIVITY_TYPES, CUSTOM):
        errors["type"] = ("engine.invalid_choice", {})
    d["type"] = kind
    title = page.field("title") or (type_name(kind) if kind in ACTIVITY_TYPES else "")
    if not title:
        errors["title"] = _chat("need_text")
    elif len(title) > MAX_TITLE:
        errors["title"] = ("activity_create.too_long", {"limit": MAX_TITLE})
    d["title"] = title
    when = read_when(page.field("when").replace("T", " "), services)
    if isinstance(when, str):
        errors["when"] = _chat(when)
    else:
        d["starts_at"] = when.isoformat()
    place = page.field("place")
    if len(place) > MAX_PLACE:
        errors["place"] = ("activity_create.too_long", {"limit": MAX_PLACE})
    d["place"] = place or None
    capacity = read_capacity(page.field("capacity") or "不限")
    if capacity is False:
        errors["capacity"] = _chat("bad_capacity")
    d["capacity"] = capacity if capacity is not False else None
    message = page.field("message")
    if len(message) > MAX_MESSAGE:
        errors["message"] = ("activity_create.too_long", {"limit": MAX_MESSAGE})
    d["message"] = message or None
    kinds = [str(k) for k in audiences_for(person)]
    audience_kind = page.field("audience")
    if audience_kind not in kinds:
        errors["audience"] = ("engine.invalid_choice", {})
        return d, errors
    audience: dict[str, Any] = {"kind": audience_kind}
    if needs_township_choice(person, audience_kind):
        township_id = page.field("township")
        township = await page.session.get(Township, int(township_id)) if township_id.isdigit() else None
        if township is None:
            errors["township"] = ("engine.invalid_choice", {})
        else:
            audience["township_id"] = township.id
    if audience_kind == AudienceKind.HOUSEHOLDS:
        codes = [c for c in re.split(r"[,，、;；\s]+", page.field("households").upper()) if c]
        visible = await _visible_codes(page)
        unknown = [c for c in codes if c not in visible]
        if unknown or not codes:
            errors["households"] = ("activity_create.bad_households",
                                    {"v": "、".join(unknown[:5]) or page.field("households")[:20]})
        else:
            audience["household_ids"] = sorted({visible[c] for c in codes})
            d["household_codes"] = codes
    d["audience"] = audience
    return d, errors


async def _visible_codes(page: Page) -> dict[str, int]:
    households = await page.session.scalars(visible_households(page.person))
    return {h.code.upper(): h.id for h in households}


async def _form_values(page: Page) -> dict[str, Any]:
    person = page.person
    townships = list(await page.session.scalars(select(Township).order_by(Township.id)))
    audiences = [(str(k), catalog.t(f"activity_create.aud_{k}_{person.role}", "zh", township=page.township_name),
                  catalog.t(f"activity_create.aud_{k}_{person.role}", "en", township=page.township_name),
                  needs_township_choice(person, str(k)))
                 for k in audiences_for(person)]
    types = [(k, type_name(k, "zh"), type_name(k, "en")) for k in ACTIVITY_TYPES]
    types.append((CUSTOM, catalog.t("activity_create.custom", "zh"), catalog.t("activity_create.custom", "en")))
    return {"active": "activities", "types": types, "audiences": audiences, "townships": townships,
            "values": {f: page.field(f) for f in FIELDS}}


async def compose_page(page: Page) -> Response:
    values = await _form_values(page)
    if page.request.method == "GET":
        return page.render("activity_new.html", errors={}, report=None, **values)
    d, errors = await read_compose(page)
    action = page.field("action")
    report = None
    if not errors:
        try:
            report = await preview(page.session, page.person, d["audience"], d["type"])
        except AudienceNotAllowed:
            errors["audience"] = _chat("out_of_scope")
    if not errors and report is not None and report.invited == 0:
        errors["audience"] = _chat("nobody")
    send_at: datetime | None = None
    if not errors and action == "schedule":
        found = read_when(page.field("send_at").replace("T", " "), page.console.app.services)
        if isinstance(found, str):
            errors["send_at"] = _chat(found)
        elif found >= datetime.fromisoformat(d["starts_at"]):
            errors["send_at"] = _chat("send_after_start")
        else:
            send_at = found
    if errors or action not in {"send", "schedule"}:
        by_channel = [(channel_name(page.step_context(), c), n) for c, n in sorted(report.by_channel.items())] \
            if report else []
        return page.render("activity_new.html", status_code=422 if errors else 200, errors=errors,
                           report=report, by_channel=by_channel, **values)
    try:
        activity, _sent = await create_activity(page.step_context(), page.person, d, send_at=send_at)
    except AudienceNotAllowed:
        return page.render("activity_new.html", status_code=422, errors={"audience": _chat("out_of_scope")},
                           report=None, **values)
    return RedirectResponse(f"/console/activities/{activity.id}", status_code=303, headers=SECURITY_HEADERS)


async def list_page(page: Page) -> Response:
    activities = list(await page.session.scalars(
        visible_activities(page.person).order_by(Activity.starts_at.desc())
        .limit(page.console.config.page_size)))
    counts = fold_counts((await page.session.execute(count_query([a.id for a in activities]))).all())
    rows = [{"a": a, "type": type_name(a.type), "c": counts.get(a.id, {}).get(ALL_CHANNELS)} for a in activities]
    return page.render("activities.html", active="activities", rows=rows, keys=COUNT_KEYS)


async def _activity(page: Page) -> Activity | None:
    raw = page.request.path_params["activity_id"]
    if not str(raw).isdigit():
        return None
    return await page.session.scalar(visible_activities(page.person).where(Activity.id == int(raw)))


async def _counts(page: Page, activity: Activity) -> dict[str, Any]:
    per = fold_counts((await page.session.execute(count_query([activity.id]))).all()).get(activity.id, {})
    return per


async def counts_json(page: Page) -> Response:
    activity = await _activity(page)
    if activity is None:
        return JSONResponse({}, status_code=404, headers=SECURITY_HEADERS)
    total = (await _counts(page, activity)).get(ALL_CHANNELS)
    return JSONResponse(total.as_dict() if total else dict.fromkeys(COUNT_KEYS, 0), headers=SECURITY_HEADERS)


async def detail_page(page: Page) -> Response:
    activity = await _activity(page)
    if activity is None:
        return page.render("message.html", status_code=404, title="not_found", text="not_found_text")
    tz = page.console.app.settings.timezone
    per = await _counts(page, activity)
    channels = [(channel_name(page.step_context(), c), v) for c, v in sorted(per.items()) if c != ALL_CHANNELS]
    invited = (await page.session.execute(
        select(Invitation, Person.name).join(Person, Person.id == Invitation.person_id)
        .where(Invitation.activity_id == activity.id).order_by(Invitation.id))).all()
    listed = await attendance_list(page.session, activity.id) if attendance_open(activity, page.now()) else []
    return page.render("activity.html", active="activities", a=activity, text=describe(activity, tz),
                       type=type_name(activity.type), total=per.get(ALL_CHANNELS), channels=channels,
                       invited=invited, listed=listed, keys=COUNT_KEYS,
                       channel_names={inv.channel: channel_name(page.step_context(), inv.channel)
                                      for inv, _name in invited},
                       can_mark=attendance_open(activity, page.now()))


async def attendance_page(page: Page) -> Response:
    activity = await _activity(page)
    if activity is None:
        return page.render("message.html", status_code=404, title="not_found", text="not_found_text")
    if not attendance_open(activity, page.now()):
        return page.render("message.html", status_code=409, title="not_yet", text="not_yet_text")
    listed = [inv.id for inv, _name in await attendance_list(page.session, activity.id)]
    present = {int(v) for v in page.form.getlist("present") if isinstance(v, str) and v.isdigit()} \
        if page.form is not None else set()
    came = await mark_attendance(page.session, activity, present & set(listed), listed, page.person.id,
                                 page.now(), page.console.app.settings.timezone)
    await page.audit("write", "attendance", activity.id, None, f"console present={came}")
    return RedirectResponse(f"/console/activities/{activity.id}?marked={came}", status_code=303,
                            headers=SECURITY_HEADERS)
