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

from dataclasses import dataclass
from datetime import date
from itertools import pairwise

from dialogs.common import ChoosesHousehold, HouseholdForm
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.recording import Records
from dialogs.engine.types import Option, Reply
from dialogs.parsing import normalize, parse_date
from domain.casework import service_name, services_for
from storage.models import ServiceEntitlement, ServiceStatus

STATES = ["household", "member", "service", "status", "applied_on", "starts_on", "expires_on",
          "confirm", "more"]
DATES_FOR = {ServiceStatus.APPLIED: ("applied_on",), ServiceStatus.ACTIVE: ("starts_on", "expires_on"),
             ServiceStatus.EXPIRED: ("expires_on",)}
SKIP, NO_END = "__skip", "__no_end"


@dataclass
class ServicesForm(HouseholdForm):
    member_id: int | None = None
    member_name: str | None = None
    relation: str | None = None
    member_asked: bool = False
    service: str | None = None
    status: str | None = None
    applied_on: date | None = None
    starts_on: date | None = None
    expires_on: date | None = None
    saved_text: str | None = None


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
    form_type = ServicesForm
    form: ServicesForm

    def _household_id(self) -> int:
        assert self.form.household_id is not None  # the first question
        return self.form.household_id

    def _service(self) -> str:
        assert self.form.service is not None  # asked before status, dates and confirm
        return self.form.service

    def _status(self) -> ServiceStatus:
        assert self.form.status is not None
        return ServiceStatus(self.form.status)

    # member
    async def ask_member(self) -> Reply | str:
        members = await self.ctx.book.member_names(self._household_id())
        if len(members) == 1 and not self.form.member_asked:
            member = members[0]
            self._member(member.id, member.name, member.relation)
            return "next"
        if not members:
            self._member(None, "", None)
            return "next"
        return Reply(self.t("ask_member"), tuple(
            Option(f"{m.name}（{self._relation(m.relation)}）", str(m.id)) for m in members))

    def _member(self, member_id: int | None, name: str, relation: str | None) -> None:
        self.form.member_id, self.form.member_name, self.form.relation = member_id, name, relation

    def _relation(self, relation: str) -> str:
        return self.ctx.t(f"families.rel_{relation}") if relation in {"father", "mother", "grandchild"} else relation

    async def on_member(self, answer: Answer) -> str | Invalid:
        for member in await self.ctx.book.member_names(self._household_id()):
            if answer.value == str(member.id) or answer.text == member.name:
                self._member(member.id, member.name, member.relation)
                return "next"
        return Invalid(self.ctx.t("engine.invalid_choice"))

    # service
    async def _current(self, service: str | None = None) -> list[ServiceEntitlement]:
        return await self.ctx.book.entitlements(self._household_id(), self.form.member_id, service)

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
                        for s in services_for(self.form.relation))
        return Reply(self.t("ask_service", who=self.form.member_name or ""), options)

    async def on_service(self, answer: Answer) -> str | Invalid:
        if answer.value not in services_for(self.form.relation):
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.service = answer.value
        self.form.status = None
        self.form.applied_on = self.form.starts_on = self.form.expires_on = None
        return "next"

    # status
    async def ask_status(self) -> Reply:
        row = await self._one(self._service())
        name = service_name(self._service(), self.ctx.locale)
        return Reply(self.t("ask_status", service=name, now=self.status_text(row)),
                     tuple(Option(self.t(f"status_{s}"), s) for s in ServiceStatus))

    async def on_status(self, answer: Answer) -> str | Invalid:
        if answer.value not in {s.value for s in ServiceStatus}:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.status = answer.value
        self.form.applied_on = self.form.starts_on = self.form.expires_on = None
        return "next"

    # dates
    def _wants(self, key: str) -> bool:
        return key in DATES_FOR.get(self._status(), ())

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
            setattr(self.form, key, None)
            return "next"
        if answer.value == "today":
            setattr(self.form, key, today)
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
        starts = self.form.starts_on
        if key == "expires_on" and starts and day < starts:
            return Invalid(self.t("ends_before_start"))
        setattr(self.form, key, day)
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
        f = self.form
        lines = [self.t("summary_title"), self.t("s_who", v=f"{f.household_label} {f.member_name or ''}"),
                 self.t("s_service", v=service_name(self._service(), self.ctx.locale)),
                 self.t("s_status", v=self.t(f"status_{f.status}"))]
        for key in DATES_FOR.get(self._status(), ()):
            value: date | None = getattr(f, key)
            lines.append(self.t(f"s_{key}", v=value.isoformat() if value else
                                (self.t("no_end") if key == "expires_on" else "—")))
        return "\n".join(lines)

    async def confirmed(self) -> str:
        await self.save()
        return "saved"

    async def save(self) -> None:
        f = self.form
        wanted = DATES_FOR.get(self._status(), ())
        row, task = await self.ctx.book.save_entitlement(
            household_id=self._household_id(), member_id=f.member_id, service=self._service(),
            status=self._status().value, dates={key: getattr(f, key) for key in wanted})
        f.saved_text = self.t("saved", service=service_name(row.service, self.ctx.locale),
                              status=self.status_text(row))
        if task is not None and row.expires_on is not None:
            f.saved_text += "\n" + self.t("renewal_task", date=row.expires_on.isoformat())

    # more
    async def ask_more(self) -> Reply:
        text, self.form.saved_text = self.form.saved_text or self.t("saved_short"), None
        return Reply(text + "\n" + self.t("ask_more"), (
            Option(self.t("more_same"), "again"), Option(self.t("more_other"), "other"),
            Option(self.t("more_done"), "done")))

    async def on_more(self, answer: Answer) -> str | Invalid | Finish:
        if answer.value == "again":
            return "again"
        if answer.value == "other":
            self.form.member_asked = True
            return "other"
        if answer.value == "done" or answer.text in {"完成", "没有了", "不用了", "done"}:
            return Finish.with_text(self.t("thanks"))
        return Invalid(self.ctx.t("engine.invalid_choice"))
