"""服务与保障 — one member's services and insurances: status and dates, updated in chat.

    household → member → service → status → applied_on → starts_on → expires_on → confirm
    confirm --save--> more --again--> service            (another service, same person)
                           --other--> member             (someone else in the household)
    confirm --edit--> status
Date states skip themselves unless the status needs them (applied: the day applied; active:
start and expiry; expired: the expiry). Saving an insurance whose expiry is near makes a
renewal task for the contact volunteer (domain/casework.py holds that rule).
"""

from __future__ import annotations

from datetime import date
from itertools import pairwise

from sqlalchemy import select

from dialogs.common import ChoosesHousehold
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.recording import Records
from dialogs.engine.types import Option, Reply
from dialogs.parsing import normalize, parse_date
from domain.casework import service_name, services_for, sync_expiry_task
from storage.models import ServiceEntitlement, ServiceStatus
from storage.queries import members_of

STATES = ["household", "member", "service", "status", "applied_on", "starts_on", "expires_on",
          "confirm", "more"]
DATES_FOR = {ServiceStatus.APPLIED: ("applied_on",), ServiceStatus.ACTIVE: ("starts_on", "expires_on"),
             ServiceStatus.EXPIRED: ("expires_on",)}
SKIP, NO_END = "__skip", "__no_end"


class ServicesStatus(ChoosesHousehold, Records):
    name = "services"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/services", "服务", "服务与保障", "保险", "services")
    in_menu = False  # reached from a family's card
    states = STATES
    transitions = [
        *({"trigger": "next", "source": a, "dest": b} for a, b in pairwise(STATES[:8])),
        {"trigger": "saved", "source": "confirm", "dest": "more"},
        {"trigger": "edit", "source": "confirm", "dest": "status"},
        {"trigger": "again", "source": "more", "dest": "service"},
        {"trigger": "other", "source": "more", "dest": "member"},
    ]

    # member
    async def ask_member(self) -> Reply | str:
        members = await members_of(self.ctx.session, int(self.data["household_id"]))
        if len(members) == 1 and not self.data.get("member_asked"):
            member, person = members[0]
            self.data.update(member_id=member.id, member_name=person.name, relation=member.relation)
            return "next"
        if not members:
            self.data.update(member_id=None, member_name="", relation=None)
            return "next"
        return Reply(self.t("ask_member"), tuple(
            Option(f"{p.name}（{self._relation(m.relation)}）", str(m.id)) for m, p in members))

    def _relation(self, relation: str) -> str:
        return self.ctx.t(f"families.rel_{relation}") if relation in {"father", "mother", "grandchild"} else relation

    async def on_member(self, answer: Answer) -> str | Invalid:
        for member, person in await members_of(self.ctx.session, int(self.data["household_id"])):
            if answer.value == str(member.id) or answer.text == person.name:
                self.data.update(member_id=member.id, member_name=person.name, relation=member.relation)
                return "next"
        return Invalid(self.ctx.t("engine.invalid_choice"))

    # service
    async def _current(self, service: str | None = None) -> list[ServiceEntitlement]:
        member_id = self.data.get("member_id")
        query = select(ServiceEntitlement).where(
            ServiceEntitlement.household_id == int(self.data["household_id"]),
            ServiceEntitlement.member_id.is_(None) if member_id is None else ServiceEntitlement.member_id == member_id)
        if service is not None:
            query = query.where(ServiceEntitlement.service == service)
        return list(await self.ctx.session.scalars(query.order_by(ServiceEntitlement.id)))

    async def _one(self, service: str) -> ServiceEntitlement | None:
        rows = await self._current(service)
        return rows[-1] if rows else None

    def status_text(self, row: ServiceEntitlement | None) -> str:
        if row is None:
            return self.t("status_none")
        text = self.t(f"status_{row.status}")
        if row.status == ServiceStatus.ACTIVE and row.expires_on:
            text += self.t("until", date=row.expires_on.isoformat())
        elif row.status == ServiceStatus.EXPIRED and row.expires_on:
            text += self.t("since", date=row.expires_on.isoformat())
        elif row.status == ServiceStatus.APPLIED and row.applied_on:
            text += self.t("applied_at", date=row.applied_on.isoformat())
        return text

    async def ask_service(self) -> Reply:
        current = {row.service: row for row in await self._current()}
        options = tuple(Option(f"{service_name(s, self.ctx.locale)} · {self.status_text(current.get(s))}", s)
                        for s in services_for(self.data.get("relation")))
        return Reply(self.t("ask_service", who=self.data.get("member_name") or ""), options)

    async def on_service(self, answer: Answer) -> str | Invalid:
        if answer.value not in services_for(self.data.get("relation")):
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["service"] = answer.value
        for key in ("status", "applied_on", "starts_on", "expires_on"):
            self.data.pop(key, None)
        return "next"

    # status
    async def ask_status(self) -> Reply:
        row = await self._one(self.data["service"])
        name = service_name(self.data["service"], self.ctx.locale)
        return Reply(self.t("ask_status", service=name, now=self.status_text(row)),
                     tuple(Option(self.t(f"status_{s}"), s) for s in ServiceStatus))

    async def on_status(self, answer: Answer) -> str | Invalid:
        if answer.value not in {s.value for s in ServiceStatus}:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["status"] = answer.value
        for key in ("applied_on", "starts_on", "expires_on"):
            self.data.pop(key, None)
        return "next"

    # dates
    def _wants(self, key: str) -> bool:
        return key in DATES_FOR.get(ServiceStatus(self.data["status"]), ())

    def _date_question(self, key: str) -> Reply | str:
        if not self._wants(key):
            return "next"
        options = [Option(self.ctx.t("engine.skip"), SKIP)]
        if key == "applied_on":
            options.insert(0, Option(self.ctx.t("visit.today"), "today"))
        if key == "expires_on":
            options.insert(0, Option(self.t("no_end"), NO_END))
        return Reply(self.t(f"ask_{key}"), tuple(options))

    def _date_answer(self, key: str, answer: Answer) -> str | Invalid:
        today = self.ctx.services.today()
        if answer.value in {SKIP, NO_END} or answer.text in {"跳过", "不清楚", "长期", "skip"}:
            self.data[key] = None
            return "next"
        if answer.value == "today":
            self.data[key] = today.isoformat()
            return "next"
        text = normalize(answer.text)
        day = parse_date(text, today)
        if key == "expires_on":  # an expiry is usually ahead: the year must be written
            if day is None or not any(ch in text for ch in "年-./") or len(text) < 8:
                return Invalid(self.t("bad_expiry"))
        elif day is None:
            return Invalid(self.t("bad_date"))
        elif day > today:
            return Invalid(self.t("future_date"))
        starts = self.data.get("starts_on")
        if key == "expires_on" and starts and day < date.fromisoformat(starts):
            return Invalid(self.t("ends_before_start"))
        self.data[key] = day.isoformat()
        return "next"

    async def ask_applied_on(self) -> Reply | str:
        return self._date_question("applied_on")

    async def on_applied_on(self, answer: Answer) -> str | Invalid:
        return self._date_answer("applied_on", answer)

    async def ask_starts_on(self) -> Reply | str:
        return self._date_question("starts_on")

    async def on_starts_on(self, answer: Answer) -> str | Invalid:
        return self._date_answer("starts_on", answer)

    async def ask_expires_on(self) -> Reply | str:
        return self._date_question("expires_on")

    async def on_expires_on(self, answer: Answer) -> str | Invalid:
        return self._date_answer("expires_on", answer)

    # confirm
    def summary(self) -> str:
        d = self.data
        lines = [self.t("summary_title"), self.t("s_who", v=f"{d.get('household_label', '')} {d.get('member_name') or ''}"),
                 self.t("s_service", v=service_name(d["service"], self.ctx.locale)),
                 self.t("s_status", v=self.t(f"status_{d['status']}"))]
        for key in DATES_FOR.get(ServiceStatus(d["status"]), ()):
            lines.append(self.t(f"s_{key}", v=d.get(key) or (self.t("no_end") if key == "expires_on" else "—")))
        return "\n".join(lines)

    async def confirmed(self) -> str:
        await self.save()
        return "saved"

    async def save(self) -> None:
        d, session, now = self.data, self.ctx.session, self.ctx.now()
        row = await self._one(d["service"])
        if row is None:
            row = ServiceEntitlement(household_id=int(d["household_id"]), member_id=d.get("member_id"),
                                     service=d["service"], status=d["status"])
            session.add(row)
        row.status = d["status"]
        for key in DATES_FOR.get(ServiceStatus(d["status"]), ()):
            setattr(row, key, date.fromisoformat(d[key]) if d.get(key) else None)
        row.updated_by_id = self._person().id
        row.updated_at = now
        await session.flush()
        await self.ctx.audit("write", "service", row.id, row.household_id, f"{row.service}:{row.status}")
        task = await sync_expiry_task(session, row, now=now, tz=self.ctx.services.timezone,
                                      policy=self.ctx.services.casework)
        self.data["saved_text"] = self.t("saved", service=service_name(row.service, self.ctx.locale),
                                         status=self.status_text(row))
        if task is not None and row.expires_on is not None:
            self.data["saved_text"] += "\n" + self.t("renewal_task", date=row.expires_on.isoformat())

    # more
    async def ask_more(self) -> Reply:
        text = self.data.pop("saved_text", self.t("saved_short"))
        return Reply(text + "\n" + self.t("ask_more"), (
            Option(self.t("more_same"), "again"), Option(self.t("more_other"), "other"),
            Option(self.t("more_done"), "done")))

    async def on_more(self, answer: Answer) -> str | Invalid | Finish:
        if answer.value == "again":
            return "again"
        if answer.value == "other":
            self.data["member_asked"] = True
            return "other"
        if answer.value == "done" or answer.text in {"完成", "没有了", "不用了", "done"}:
            return Finish.with_text(self.t("thanks"))
        return Invalid(self.ctx.t("engine.invalid_choice"))
