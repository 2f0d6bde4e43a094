"""建档走访 — the intake visit that opens a household's file (一户一档).

    household → resume → children → economic → members → difficulty → needs → expectation
              → visits → confirm --save--> CaseFile (+ children, visit pace, a follow-up)
    resume --goto_<state>--> <state>        a paused draft carries on where it stopped
    children, members --again--> itself     one child, one parent, one question at a time
    confirm --edit--> pick_field --goto_<state>--> <state> --review--> confirm

Long answers may come in several messages: each one is added to the answer until the volunteer
replies 下一项 (or 完成). 暂停 at any question keeps the answers as a draft — not the file —
that anyone who may see the household can continue another day; an open intake also simply
waits 14 days for the next message. Nothing becomes the file until the volunteer confirms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from dialogs.common import ChoosesHousehold, HouseholdForm, read_yes_no, yes_no
from dialogs.engine.dialog import Answer, Finish, Invalid, Stay
from dialogs.engine.recording import Records, change_one_field, confirm_options
from dialogs.engine.types import Option, Reply
from dialogs.parsing import parse_date
from domain.intake import CaseFileRecord, ChildRecord
from storage.models import IntakeDraft, VisitPreference

SECTIONS = ["children", "economic", "members", "difficulty", "needs", "expectation", "visits"]
LONG = ("economic", "difficulty", "needs", "expectation")
ASPECTS = ("physical", "psych", "hobbies")
QUICK = {"economic": ("econ_hard", "econ_fair", "econ_ok"),
         "expectation": ("care_home", "care_institution", "care_unsure")}
PACES = {"pace_14": 14, "pace_30": 30, "pace_60": 60, "pace_90": 90}
NEXT, CLEAR, PAUSE = "__next", "__clear", "__pause"
DONE_WORDS = frozenset({"完成", "下一项", "下一个", "好了", "写完了", "就这些", "没有了", "next", "done"})
NONE_WORDS = frozenset({"无", "没有", "没", "none", "no"})
PAUSE_WORDS = frozenset({"暂停", "改天再填", "先停一下", "pause"})
UNKNOWN_WORDS = frozenset({"不清楚", "不知道", "不详", "不便说", "不便透露", "unknown"})
MAX_TEXT = 2000
MAX_CHILDREN = 5


@dataclass
class IntakeForm(HouseholdForm):
    children: list[dict[str, Any]] | None = None  # name, birth, death (ISO), cause
    child: dict[str, Any] | None = None  # the child being asked about
    cstep: str | None = None  # review | name | birth | death | cause | more
    children_changed: bool = False
    economic: str | None = None
    members: list[list[Any]] | None = None  # [member id, name, relation] of the parents asked about
    m_idx: int = 0
    m_aspect: int = 0
    notes: dict[str, dict[str, str]] | None = None  # member id → physical | psych | hobbies
    difficulty: str | None = None
    needs: str | None = None
    expectation: str | None = None
    accepts: str | None = None
    pace: str | None = None
    vstep: str | None = None  # "pace" while the contact rhythm is asked


class Intake(ChoosesHousehold, Records):
    name = "intake"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/intake", "建档", "建档走访", "intake")
    idle_timeout = timedelta(days=14)
    states = ["household", "resume", *SECTIONS, "confirm", "pick_field"]
    transitions = [
        *({"trigger": "next", "source": a, "dest": b}
          for a, b in zip(["household", "resume", *SECTIONS], ["resume", *SECTIONS, "confirm"], strict=True)),
        {"trigger": "again", "source": "children", "dest": "children"},
        {"trigger": "again", "source": "members", "dest": "members"},
        {"trigger": "again", "source": "visits", "dest": "visits"},
        {"trigger": "goto_visits", "source": "confirm", "dest": "visits"},
        *({"trigger": f"goto_{s}", "source": "resume", "dest": s} for s in SECTIONS),
        {"trigger": "goto_confirm", "source": "resume", "dest": "confirm"},
        *change_one_field(SECTIONS),
    ]
    editable = tuple(SECTIONS)
    form_type = IntakeForm
    form: IntakeForm

    # ------------------------------------------------------------ household

    async def ask_household(self) -> Reply | str | Finish:
        book = self.ctx.book
        if self.form.household_id:
            household = await book.household(int(self.form.household_id))
            if household is not None and await book.unfiled([household]):
                self.form.household_label = await book.label(household)
                return "next"
            self.form.household_id = None
        households = (await book.unfiled(await book.households()))[:40]
        if not households:
            return Finish.with_text(self.t("all_filed"))
        labels = await book.labels(households)
        drafts = await book.drafts_among([h.id for h in households])
        options = tuple(Option(labels[h.id] + (self.t("has_draft") if h.id in drafts else ""), str(h.id))
                        for h in households)
        return Reply(self.t("ask_household"), options)

    async def on_household(self, answer: Answer) -> str | Invalid:
        if answer.value is None or not answer.value.isdigit():
            return Invalid(self.ctx.t("common.pick_household"))
        household = await self.ctx.book.household(int(answer.value))
        if household is None or not await self.ctx.book.unfiled([household]):
            return Invalid(self.ctx.t("common.pick_household"))
        self.form.household_id = household.id
        self.form.household_label = await self.ctx.book.label(household)
        return "next"

    # ------------------------------------------------------------ pause and resume

    async def handle(self, answer: Answer) -> Any:
        if self.state not in {"household", "resume"} and (
                answer.value == PAUSE or (answer.value is None and answer.text.lower() in PAUSE_WORDS)):
            return await self._pause()
        return await super().handle(answer)

    async def _draft(self) -> IntakeDraft | None:
        return await self.ctx.book.intake_draft(int(self.form.household_id))

    async def _pause(self) -> Finish:
        await self.ctx.book.save_intake_draft(
            int(self.form.household_id), "confirm" if self.state == "pick_field" else self.state,
            {k: v for k, v in self.data.items() if k != "editing"})  # the form as JSON
        return Finish.with_text(self.t("paused"))

    async def ask_resume(self) -> Reply | str:
        draft = await self._draft()
        if draft is None:
            return "next"
        who = await self.ctx.book.person_name(draft.volunteer_id)
        when = self.ctx.services.local(draft.updated_at).date().isoformat()
        return Reply(self.t("ask_resume", date=when, who=who or "—"),
                     (Option(self.t("resume_continue"), "continue"), Option(self.t("resume_restart"), "restart")))

    async def on_resume(self, answer: Answer) -> str | Invalid:
        draft = await self._draft()
        if draft is None:
            return "next"
        if answer.value == "continue":
            self.form = self.form.prefill({k: v for k, v in draft.data.items() if k != "household_id"})
            return f"goto_{draft.state}"
        if answer.value == "restart":
            await self.ctx.book.drop_intake_draft(draft.household_id)
            return "next"
        return Invalid(self.ctx.t("engine.invalid_choice"))

    def _done(self) -> str:
        return self.answered()

    # ------------------------------------------------------------ long answers

    def _slot(self, path: str) -> str | None:
        """A long answer by path: a field ("economic") or a member's note ("notes.12.psych")."""
        first, *rest = path.split(".")
        node: Any = getattr(self.form, first)
        for part in rest:
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, str) else None

    def _set_slot(self, path: str, value: str) -> None:
        first, *rest = path.split(".")
        if not rest:
            setattr(self.form, first, value)
            return
        node = getattr(self.form, first)
        if node is None:
            node = {}
            setattr(self.form, first, node)
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        node[rest[-1]] = value

    def _long_options(self, path: str) -> tuple[Option, ...]:
        options = [Option(self.t("opt_next"), NEXT)]
        if self._slot(path):
            options.append(Option(self.t("opt_clear"), CLEAR))
        options.append(Option(self.t("opt_pause"), PAUSE))
        return tuple(options)

    def _long_question(self, path: str, question: str, quick: tuple[str, ...] = ()) -> Reply:
        current = self._slot(path)
        text = question + "\n" + (self.t("so_far", v=current) if current else self.t("how_long"))
        options = (*(Option(self.t(q), self.t(q)) for q in quick), *self._long_options(path))
        return Reply(text, options)

    def _long(self, path: str, answer: Answer, advance: str) -> str | Stay:
        """Add one message to a long answer; 下一项 moves on; 重写 starts the answer again."""
        current = self._slot(path) or ""
        word = answer.text.lower()
        if answer.value == NEXT or (answer.value is None and word in DONE_WORDS):
            self._set_slot(path, current)
            return advance
        if answer.value == CLEAR:
            self._set_slot(path, "")
            return Stay(Reply(self.t("cleared"), self._long_options(path)))
        if not current and answer.value is None and word in NONE_WORDS:
            self._set_slot(path, self.ctx.t("engine.none"))
            return advance
        piece = (answer.value if answer.value is not None else answer.clean).strip()
        if not piece:
            return Stay(Reply(self.t("need_text"), self._long_options(path)))
        combined = f"{current}\n{piece}" if current else piece
        if len(combined) > MAX_TEXT:
            return Stay(Reply(self.t("too_long", limit=MAX_TEXT), self._long_options(path)))
        self._set_slot(path, combined)
        return Stay(Reply(self.t("noted", n=len(combined)), self._long_options(path)))

    # ------------------------------------------------------------ the deceased children

    async def _existing_children(self) -> list[dict[str, Any]]:
        rows = await self.ctx.book.children_of(int(self.form.household_id))
        return [{"name": c.name or "", "birth": c.birth_date.isoformat() if c.birth_date else None,
                 "death": c.death_date.isoformat() if c.death_date else None, "cause": c.death_cause or ""}
                for c in rows]

    def _child_line(self, child: dict[str, Any]) -> str:
        unknown = self.t("unknown")
        return self.t("child_line", name=child.get("name") or unknown, birth=child.get("birth") or unknown,
                      death=child.get("death") or unknown, cause=child.get("cause") or unknown)

    async def ask_children(self) -> Reply:
        if self.form.children is None:
            self.form.children = await self._existing_children()
            self.form.cstep = "review" if self.form.children else "name"
        step = self.form.cstep or "review"
        if step == "review" and not self.form.children:
            step = self.form.cstep = "name"
        if step == "review":
            lines = [self.t("children_known"), *(self._child_line(c) for c in self.form.children or [])]
            return Reply("\n".join([*lines, self.t("children_ok_q")]), (
                Option(self.t("children_ok"), "ok"), Option(self.t("children_redo"), "redo"),
                Option(self.t("children_add"), "add"), Option(self.t("opt_pause"), PAUSE)))
        if step == "more":
            return Reply(self.t("ask_more_children"), yes_no(self.ctx))
        options = (Option(self.t("unknown"), "unknown"), Option(self.t("opt_pause"), PAUSE))
        return Reply(self.t(f"ask_child_{step}"), options)

    async def on_children(self, answer: Answer) -> str | Invalid:
        step = self.form.cstep or "review"
        if self.form.child is None:
            self.form.child = {}
        child = self.form.child
        children = self.form.children if self.form.children is not None else []
        self.form.children = children
        unknown = answer.value == "unknown" or answer.text in UNKNOWN_WORDS
        if step == "review":
            if answer.value not in {"ok", "redo", "add"}:
                return Invalid(self.ctx.t("engine.invalid_choice"))
            if answer.value == "ok":
                return self._done()
            if answer.value == "redo":
                self.form.children = []
            elif len(children) >= MAX_CHILDREN:
                return Invalid(self.t("too_many_children"))
            self.form.children_changed = True
            self.form.child, self.form.cstep = {}, "name"
            return "again"
        if step == "name":
            name = "" if unknown else answer.clean.strip()
            if len(name) > 50:
                return Invalid(self.t("too_long", limit=50))
            child["name"], self.form.cstep = name, "birth"
            return "again"
        if step in {"birth", "death"}:
            day: date | None = None
            if not unknown:
                day = parse_date(answer.text, self.ctx.services.today())
                if day is None or not any(ch in answer.text for ch in "年-./") or len(answer.text) < 8:
                    return Invalid(self.t("bad_full_date"))
                if day > self.ctx.services.today():
                    return Invalid(self.t("future_date"))
                born = child.get("birth")
                if step == "death" and born and day < date.fromisoformat(born):
                    return Invalid(self.t("death_before_birth"))
            child[step] = day.isoformat() if day else None
            self.form.cstep = "death" if step == "birth" else "cause"
            return "again"
        if step == "cause":
            cause = "" if unknown else answer.clean.strip()
            if len(cause) > 200:
                return Invalid(self.t("too_long", limit=200))
            child["cause"] = cause
            children.append(child)
            self.form.children_changed = True
            self.form.child, self.form.cstep = {}, "more"
            return "again"
        more = read_yes_no(answer)  # step == "more"
        if more is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        if more and len(children) < MAX_CHILDREN:
            self.form.cstep = "name"
            return "again"
        self.form.cstep = "review"
        return self._done()

    # ------------------------------------------------------------ household-level long answers

    async def ask_economic(self) -> Reply:
        return self._long_question("economic", self.t("ask_economic"), QUICK["economic"])

    async def on_economic(self, answer: Answer) -> str | Stay:
        return self._long("economic", answer, self._done())

    async def ask_difficulty(self) -> Reply:
        return self._long_question("difficulty", self.t("ask_difficulty"))

    async def on_difficulty(self, answer: Answer) -> str | Stay:
        return self._long("difficulty", answer, self._done())

    async def ask_needs(self) -> Reply:
        return self._long_question("needs", self.t("ask_needs"))

    async def on_needs(self, answer: Answer) -> str | Stay:
        return self._long("needs", answer, self._done())

    async def ask_expectation(self) -> Reply:
        return self._long_question("expectation", self.t("ask_expectation"), QUICK["expectation"])

    async def on_expectation(self, answer: Answer) -> str | Stay:
        return self._long("expectation", answer, self._done())

    # ------------------------------------------------------------ each parent

    async def _members(self) -> list[list[Any]]:
        if self.form.members is None:
            rows = await self.ctx.book.member_names(int(self.form.household_id or 0))
            elders = [m for m in rows if m.relation in {"father", "mother"}] or rows
            self.form.members = [[m.id, m.name, m.relation] for m in elders]
        return self.form.members

    def _relation(self, relation: str) -> str:
        key = f"families.rel_{relation}"
        return self.ctx.t(key) if relation in {"father", "mother", "grandchild"} else relation

    async def ask_members(self) -> Reply | str:
        members = await self._members()
        index, aspect = self.form.m_idx, self.form.m_aspect
        if index >= len(members):
            self.form.m_idx, self.form.m_aspect = 0, 0
            return self._done()
        member_id, name, relation = members[index]
        question = self.t(f"ask_{ASPECTS[aspect]}", who=f"{name}（{self._relation(relation)}）")
        return self._long_question(f"notes.{member_id}.{ASPECTS[aspect]}", question)

    async def on_members(self, answer: Answer) -> str | Stay:
        members = await self._members()
        index, aspect = self.form.m_idx, self.form.m_aspect
        if index >= len(members):
            return "again"
        result = self._long(f"notes.{members[index][0]}.{ASPECTS[aspect]}", answer, "again")
        if result == "again":
            aspect += 1
            if aspect >= len(ASPECTS):
                index, aspect = index + 1, 0
            self.form.m_idx, self.form.m_aspect = index, aspect
        return result

    # ------------------------------------------------------------ visits and their pace

    async def ask_visits(self) -> Reply:
        if self.form.vstep == "pace":
            return Reply(self.t("ask_pace"), (*(Option(self.t(k), k) for k in PACES),
                                              Option(self.t("opt_pause"), PAUSE)))
        return Reply(self.t("ask_visits"), (
            *(Option(self.t(f"visits_{p}"), p) for p in VisitPreference), Option(self.t("opt_pause"), PAUSE)))

    async def on_visits(self, answer: Answer) -> str | Invalid:
        if self.form.vstep == "pace":
            if answer.value not in PACES:
                return Invalid(self.ctx.t("engine.invalid_choice"))
            self.form.pace, self.form.vstep = answer.value, None
            return self._done()
        if answer.value not in {p.value for p in VisitPreference}:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.accepts = answer.value
        self.form.pace = None
        if answer.value == VisitPreference.PACED:
            self.form.vstep = "pace"
            return "again"
        return self._done()

    # ------------------------------------------------------------ confirm

    def _text(self, value: str | None) -> str:
        return value if value else self.t("not_filled")

    def summary(self) -> str:
        d = self.data
        lines = [self.t("summary_title", label=d.get("household_label", ""))]
        children = d.get("children") or []
        lines.append(self.t("s_children"))
        lines.extend([self._child_line(c) for c in children] or ["  " + self.t("not_filled")])
        lines.append(self.t("s_economic", v=self._text(d.get("economic"))))
        notes = d.get("notes") or {}
        for member_id, name, relation in d.get("members") or []:
            n = notes.get(str(member_id)) or {}
            lines.append(self.t("s_member", who=f"{name}（{self._relation(relation)}）",
                                physical=self._text(n.get("physical")), psych=self._text(n.get("psych")),
                                hobbies=self._text(n.get("hobbies"))))
        lines.append(self.t("s_difficulty", v=self._text(d.get("difficulty"))))
        lines.append(self.t("s_needs", v=self._text(d.get("needs"))))
        lines.append(self.t("s_expectation", v=self._text(d.get("expectation"))))
        visits = self.t(f"visits_{d['accepts']}") if d.get("accepts") else self.t("not_filled")
        if d.get("pace"):
            visits += f"（{self.t(d['pace'])}）"
        lines.append(self.t("s_visits", v=visits))
        return "\n".join(lines)

    def confirm_choices(self) -> tuple[Option, ...]:
        save, edit, discard = confirm_options(self.ctx)
        return (save, edit, Option(self.t("opt_pause"), PAUSE), discard)

    async def discarded(self) -> None:
        await self.ctx.book.drop_intake_draft(int(self.form.household_id))

    async def confirmed(self) -> str | Finish:
        if not self.form.accepts:
            self.editing = True
            return "goto_visits"
        return await self.save()

    def start_editing(self, field: str) -> None:
        self.form.m_idx, self.form.m_aspect, self.form.cstep = 0, 0, "review"
        self.form.vstep = None

    async def save(self) -> Finish:
        d = self.data
        notes = {str(mid): {"physical": (d.get("notes") or {}).get(str(mid), {}).get("physical") or None,
                            "psychological": (d.get("notes") or {}).get(str(mid), {}).get("psych") or None,
                            "hobbies": (d.get("notes") or {}).get(str(mid), {}).get("hobbies") or None}
                 for mid, _name, _rel in d.get("members") or []}
        children = None
        if d.get("children_changed"):
            children = [ChildRecord(
                name=child.get("name") or None,
                birth_date=date.fromisoformat(child["birth"]) if child.get("birth") else None,
                death_date=date.fromisoformat(child["death"]) if child.get("death") else None,
                cause=child.get("cause") or None) for child in d.get("children") or []]
        outcome = await self.ctx.book.file_case(CaseFileRecord(
            household_id=int(d["household_id"]), economic=d.get("economic"),
            difficulty=d.get("difficulty"), needs=d.get("needs"), expectation=d.get("expectation"),
            accepts=d["accepts"], pace_label=self.t(d["pace"]) if d.get("pace") else None,
            pace_days=PACES.get(d.get("pace") or ""), member_notes=notes, children=children,
            needs_follow_up=bool(d.get("needs")) and d.get("needs") != self.ctx.t("engine.none")))
        if outcome == "not_allowed":
            return Finish.with_text(self.ctx.t("engine.not_allowed"))
        if outcome == "already_filed":
            return Finish.with_text(self.t("already_filed"))
        return Finish.with_text(self.t("saved"))
