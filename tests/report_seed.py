"""A hand-counted third quarter (2026-Q3) on top of the demo county, for the report tests.

Every record below is listed with what it should and should not count for; the expected
figures in tests/test_reports.py were counted by hand from these lists, not by running code.
Weeks of Q3 (ISO, Thursday in the quarter): w1 Jun 29–Jul 5 … w13 Sep 21–27 (13 weeks).
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import App
from storage.models import (
    Activity,
    Assessment,
    CaseFile,
    Consent,
    Greeting,
    HealthReading,
    Household,
    Invitation,
    OutboxMessage,
    Person,
    Preference,
    Task,
    Visit,
)

TZ = ZoneInfo("Asia/Shanghai")


def at(day: str, hm: str = "10:00") -> datetime:
    """A local Shanghai time as an aware datetime."""
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(hm), tzinfo=TZ)


class Seeder:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.h = {h.code: h.id for h in session.scalars(select(Household))}
        self.p = {p.name: p for p in session.scalars(select(Person))}
        self.n = 0

    def visit(self, code: str, day: str, kind: str, *, occasion: str | None = None, yuan: int = 0,
              outcome: str = "done", recorded: datetime | None = None, by: str | None = None) -> None:
        self.s.add(Visit(household_id=self.h[code], visited_on=date.fromisoformat(day), kind=kind,
                         occasion=occasion, outcome=outcome, money_fen=yuan * 100, source="test",
                         volunteer_id=self.p[by].id if by else None,
                         recorded_at=recorded or at(day, "18:00")))

    def reading(self, code: str, when: datetime, *, danger: bool = False,
                followed: datetime | None = None) -> None:
        self.s.add(HealthReading(household_id=self.h[code], measured_at=when, systolic=190 if danger else 130,
                                 diastolic=100 if danger else 80, danger=danger, followed_up_at=followed,
                                 recorded_at=when))

    def outbox(self, *, channel: str, kind: str, status: str, created: datetime, person: str,
               sent: datetime | None = None) -> OutboxMessage:
        self.n += 1
        row = OutboxMessage(idempotency_key=f"test:{self.n}", channel=channel, address=f"a{self.n}",
                            person_id=self.p[person].id, kind=kind, payload={"text": "…"}, status=status,
                            created_at=created, next_attempt_at=created, sent_at=sent)
        self.s.add(row)
        self.s.flush()
        return row


def seed_q3(app: App) -> None:
    with app.db.session() as session:
        s = Seeder(session)
        # --- visits. Weekly-greeting weeks in brackets; "money" = holiday-visit spending.
        s.visit("QX001", "2026-07-01", "phone")                    # w1
        s.visit("QX001", "2026-07-03", "wechat")                   # w1 again: no new week
        s.visit("QX001", "2026-07-08", "home", yuan=300)           # w2; money without occasion: not holiday money
        s.visit("QX001", "2026-08-02", "home", occasion="birthday", yuan=200)  # w5; birthday of 李桂芳 (8-02) done; money
        s.visit("QX001", "2026-09-25", "card", occasion="mid_autumn")          # card: holiday yes, weekly no
        s.visit("QX001", "2026-09-26", "home", occasion="mid_autumn", yuan=500)  # w13; same holiday once; money
        s.visit("QX002", "2026-06-30", "phone")                    # w1 (its Tuesday is in June: the week is Q3's)
        s.visit("QX002", "2026-07-15", "phone", outcome="not_reached")  # not a contact
        s.visit("QX002", "2026-08-19", "home", occasion="qixi", yuan=100)  # w8; 七夕 not a programme holiday; money
        s.visit("QX004", "2026-07-06", "home")                     # w2
        s.visit("QX004", "2026-07-13", "home")                     # w3
        s.visit("QX004", "2026-09-25", "home", occasion="mid_autumn", yuan=1600)  # w13; holiday; money over entitlement
        s.visit("QX004", "2026-10-01", "home", occasion="national_day", yuan=100)  # Q4: counts for nothing here
        s.visit("BY001", "2026-07-07", "phone", occasion="birthday",
                recorded=at("2026-07-07", "15:00"))                # w2; a phone call is not a birthday visit
        s.visit("BY001", "2026-09-10", "home", occasion="birthday")  # w11; birthday of 何翠英 (9-09) done
        s.visit("CL001", "2026-08-10", "wechat")                   # w7
        s.visit("CL001", "2026-08-11", "wechat")                   # w7 again
        s.visit("CL001", "2026-09-25", "message", occasion="mid_autumn")  # w13; same as the greeting below

        # --- health readings (local times). Service days per household in comments.
        s.reading("QX001", at("2026-07-03", "10:00"))
        s.reading("QX001", at("2026-07-03", "15:00"))              # same day: one service
        s.reading("QX001", at("2026-07-20"))                       # July: 2 days, met
        s.reading("QX001", at("2026-08-05"))
        s.reading("QX001", at("2026-09-20", "08:00"), danger=True)  # followed by the Sep 26 home visit (154 h)
        s.reading("QX002", at("2026-07-01", "00:30"))              # June 30 in UTC, July 1 locally: counts
        s.reading("QX002", at("2026-09-12"))
        s.reading("QX002", at("2026-09-30", "23:30"))              # September: 2 days, met
        s.reading("QX002", at("2026-10-01", "00:30"))              # Sep 30 in UTC, Oct 1 locally: not Q3
        s.reading("QX004", at("2026-08-10"))
        s.reading("QX004", at("2026-08-25", "09:00"), danger=True,
                  followed=at("2026-08-26", "21:00"))              # marked followed up after 36 h; August met
        s.reading("BY001", at("2026-07-07", "10:00"), danger=True)  # phone call recorded 15:00: 5 h
        s.reading("BY001", at("2026-07-08", "09:00"))              # July met
        s.reading("BY002", at("2026-09-29", "20:00"), danger=True)  # never followed up
        s.reading("CL001", at("2026-09-01"))
        s.reading("CL001", at("2026-10-02"), danger=True)          # Q4

        # --- greetings sent by Warmline
        sent = s.outbox(channel="wechat", kind="greeting", status="sent", created=at("2026-09-25", "09:00"),
                        person="钱月娥", sent=at("2026-09-25", "10:00"))
        session.add(Greeting(household_id=s.h["CL001"], member_person_id=s.p["钱月娥"].id,
                             occasion="mid_autumn", year=2026, channel="wechat", outbox_id=sent.id,
                             status="sent"))
        failed = s.outbox(channel="wechat", kind="greeting", status="failed", created=at("2026-09-25", "09:00"),
                          person="杨淑华")
        session.add(Greeting(household_id=s.h["BY002"], member_person_id=s.p["杨淑华"].id,
                             occasion="mid_autumn", year=2026, channel="wechat", outbox_id=failed.id,
                             status="failed"))
        s.outbox(channel="console", kind="reply", status="sent", created=at("2026-08-01"), person="林晓燕",
                 sent=at("2026-08-01"))
        s.outbox(channel="telegram", kind="reminder", status="queued", created=at("2026-09-30"), person="周建国")
        s.outbox(channel="telegram", kind="alert", status="expired", created=at("2026-07-10"), person="郑丽华")
        s.outbox(channel="console", kind="reply", status="sent", created=at("2026-10-05"), person="林晓燕",
                 sent=at("2026-10-05"))                            # Q4

        # --- case files and assessments
        for code, day in (("QX001", "2026-06-15"), ("QX002", "2026-08-01"), ("BY001", "2026-10-05")):
            session.add(CaseFile(household_id=s.h[code], confirmed_at=at(day), updated_at=at(day)))
        for code, day, scores in (("QX001", "2026-06-20", (5, 1, 1, 1)), ("QX001", "2026-09-10", (4, 2, 2, 3)),
                                  ("QX002", "2026-08-05", (5, 1, 1, 2)), ("QX002", "2026-09-20", (3, 3, 2, 4)),
                                  ("CL001", "2026-07-15", (4, 2, 3, 3))):
            g, h, a, f = scores
            session.add(Assessment(household_id=s.h[code], assessed_on=date.fromisoformat(day), grief_trauma=g,
                                   healing=h, acceptance=a, future_attitude=f, recorded_at=at(day)))

        # --- activities and invitations
        coordinator = s.p["郑丽华"].id
        qingxi = session.get(Household, s.h["QX001"]).township_id  # type: ignore[union-attr]

        def activity(title: str, when: datetime, township: int | None, status: str, cost: int,
                     cancelled: datetime | None = None) -> int:
            row = Activity(township_id=township, created_by_id=coordinator, type="class", title=title,
                           starts_at=when, status=status, cost_fen=cost * 100, cancelled_at=cancelled,
                           created_at=at("2026-06-01"))
            session.add(row)
            session.flush()
            return row.id

        def invite(activity_id: int, name: str, code: str, rsvp: str | None, attended: bool | None) -> None:
            session.add(Invitation(activity_id=activity_id, person_id=s.p[name].id, household_id=s.h[code],
                                   channel="wechat", rsvp=rsvp, attended=attended, created_at=at("2026-06-02")))

        mooncakes = activity("中秋做月饼", at("2026-09-24", "14:00"), qingxi, "sent", 800)
        invite(mooncakes, "王德福", "QX001", "yes", True)
        invite(mooncakes, "陈秀珍", "QX002", "yes", False)
        invite(mooncakes, "赵国庆", "QX003", "no", None)
        phones = activity("智能手机课", at("2026-08-15", "09:00"), None, "sent", 200)
        invite(phones, "杨淑华", "BY002", "yes", True)
        invite(phones, "许福生", "CL001", "maybe", None)
        invite(phones, "吴金山", "BY001", "yes", True)
        called_off = activity("取消的茶话会", at("2026-09-01"), qingxi, "cancelled", 500,
                              cancelled=at("2026-08-20"))
        invite(called_off, "赵国庆", "QX003", "yes", True)         # a cancelled activity counts for nothing
        activity("草稿活动", at("2026-09-02"), qingxi, "draft", 300)

        # --- consent (opt-in), as at the end of Q3
        def consent(name: str, code: str, given: str, withdrawn: str | None = None) -> None:
            session.add(Consent(person_id=s.p[name].id, household_id=s.h[code], channel="wechat",
                                wording_version="v1", given_at=at(given),
                                withdrawn_at=at(withdrawn) if withdrawn else None))

        consent("王德福", "QX001", "2026-05-01")                    # opted in
        consent("李桂芳", "QX001", "2026-05-01", "2026-09-01")      # withdrew in Q3
        consent("陈秀珍", "QX002", "2026-07-10")                    # …but asked to stop messages:
        session.add(Preference(person_id=s.p["陈秀珍"].id, stopped_at=at("2026-09-15"), updated_at=at("2026-09-15")))
        consent("吴金山", "BY001", "2026-10-10")                    # only after Q3
        consent("钱月娥", "CL001", "2026-08-01", "2026-10-15")      # withdrew after Q3: still in at its end
        consent("杨淑华", "BY002", "2026-03-01")                    # opted in

        # --- manual tasks
        def task(code: str, due: datetime, done: datetime | None) -> None:
            session.add(Task(household_id=s.h[code], kind="call", due_at=due, done_at=done,
                             created_at=at("2026-06-01")))

        task("QX001", at("2026-07-10"), at("2026-07-09"))            # on time
        task("QX002", at("2026-08-10"), at("2026-08-12"))            # late
        task("QX004", at("2026-09-15"), None)                        # overdue
        task("BY001", at("2026-09-01"), at("2026-09-01"))            # on time (at the minute)
        task("CL001", at("2026-10-03"), None)                        # Q4

        # QX003 asked for a slower pace; it has no records in Q3 at all.
        session.get(Household, s.h["QX003"]).visit_preference = "paced"  # type: ignore[union-attr]
