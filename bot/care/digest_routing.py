"""Who hears about which task in the morning digests, worked out over a township's tasks as columns.

Why: at province scale a morning has hundreds of thousands of due and overdue tasks, and a
digest shows each person only their first `max_lines` lines. Building a task object for every
task, routing and merging them one by one was most of a tick's time. Here routing, merging
(one line per household, kind, occasion and member) and counting run as array operations over
the planner's column batches (`planner_bulk.TaskBatch`), and task objects are built only for
the tasks that can be among a person's first lines.

Exactness: the lines are ordered by `planner.sort_key` (urgency, due day, household code,
kind, key). The arrays order by a prefix of it (everything but the key); a line whose prefix
comes after the prefix of a person's `max_lines`-th line cannot be among their first lines, so
every task whose prefix is not after that one is kept and the caller sorts the kept ones with
the full key. `route` in reminders.py is the per-task reference; tests/test_reminders_bulk.py
requires the same digests from both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from bot.care import planner as p
from bot.care.planner_bulk import NONE, OCCASIONS, STATUS_CODE, TaskBatch, day_of
from bot.care.policy import Policy

_ROUTED = (STATUS_CODE[p.DUE], STATUS_CODE[p.OVERDUE])
_URGENCY = np.array([p._URGENCY[s] for s in p.STATUSES], np.int64)
_MAX = np.iinfo(np.int64).max


@dataclass
class Inbox:
    """One person's tasks from one township. The totals, when given, count the distinct lines
    of each part in all: the lists then hold only the tasks that can be among the first lines."""

    own: list[p.PlannedTask] = field(default_factory=list)
    escalated: list[p.PlannedTask] = field(default_factory=list)
    own_total: int | None = None
    escalated_total: int | None = None


@dataclass
class _Columns:
    """The due and overdue tasks of a township, one row each, from batches and from objects."""

    household: list[np.ndarray] = field(default_factory=list)  # household id, or NONE
    township: list[np.ndarray] = field(default_factory=list)
    kind: list[np.ndarray] = field(default_factory=list)  # index into `kinds`
    occasion: list[np.ndarray] = field(default_factory=list)  # index into `occasions`, or NONE
    member: list[np.ndarray] = field(default_factory=list)
    due: list[np.ndarray] = field(default_factory=list)
    status: list[np.ndarray] = field(default_factory=list)
    volunteer: list[np.ndarray] = field(default_factory=list)
    code: list[np.ndarray] = field(default_factory=list)  # index into `codes`
    source: list[np.ndarray] = field(default_factory=list)  # batch number, or -1: an object
    row: list[np.ndarray] = field(default_factory=list)  # row in that batch, or index of the object

    def column(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.empty(0, np.int64)


class _Index:
    """Names (kinds, occasions, household codes) as integers, ranked later in string order."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names: list[str] = list(names)
        self.of = {n: i for i, n in enumerate(self.names)}

    def code(self, name: str) -> int:
        if name not in self.of:
            self.of[name] = len(self.names)
            self.names.append(name)
        return self.of[name]

    def ranks(self) -> np.ndarray:
        """rank[i]: the place of names[i] in string order."""
        order = sorted(range(len(self.names)), key=self.names.__getitem__)
        rank = np.empty(len(self.names), np.int64)
        rank[order] = np.arange(len(self.names))
        return rank


def township_inboxes(batches: Sequence[TaskBatch], objects: Sequence[p.PlannedTask], today: date,
                     policy: Policy, active: set[int], coordinators: dict[int, list[int]],
                     max_lines: int) -> dict[int, Inbox]:
    """`reminders.route` and `merge_same` for one township, with task objects built only for the
    tasks that can be among each person's first `max_lines` lines (see the module docstring).

    `objects`: the township's tasks that are objects already (manual tasks, the class invitation).
    Call it inside the batches' database session: building objects may load members' names."""
    kinds, occasions, codes = _Index(p.KINDS), _Index(OCCASIONS), _Index()
    cols = _Columns()
    for number, batch in enumerate(batches):
        index = np.nonzero(np.isin(batch.status, _ROUTED))[0]
        if len(index):
            hh = batch.hh[index]
            volunteers, names = batch.labels.volunteers(), batch.labels.codes()
            hids = batch.hid.tolist()
            per_home_volunteer = np.array([volunteers.get(h, NONE) for h in hids], np.int64)
            per_home_code = np.array([codes.code(names.get(h) or "") for h in hids], np.int64)
            cols.household.append(batch.hid[hh])
            cols.township.append(batch.township[hh])
            cols.kind.append(batch.kind[index])  # the batch's kind codes index p.KINDS, as `kinds` does
            cols.occasion.append(batch.occasion[index])
            cols.member.append(batch.member[index])
            cols.due.append(batch.due[index])
            cols.status.append(batch.status[index])
            cols.volunteer.append(per_home_volunteer[hh])
            cols.code.append(per_home_code[hh])
            cols.source.append(np.full(len(index), number, np.int64))
            cols.row.append(index)
    kept_objects = [t for t in objects if t.status in (p.DUE, p.OVERDUE)]
    if kept_objects:
        def col(values: list[int]) -> np.ndarray:
            return np.array(values, np.int64)

        cols.household.append(col([NONE if t.household_id is None else t.household_id for t in kept_objects]))
        cols.township.append(col([t.township_id for t in kept_objects]))
        cols.kind.append(col([kinds.code(t.kind) for t in kept_objects]))
        cols.occasion.append(col([NONE if t.occasion is None else occasions.code(t.occasion) for t in kept_objects]))
        cols.member.append(col([NONE if t.member_id is None else t.member_id for t in kept_objects]))
        cols.due.append(col([day_of(t.due) for t in kept_objects]))
        cols.status.append(col([STATUS_CODE[t.status] for t in kept_objects]))
        cols.volunteer.append(col([NONE if t.volunteer_id is None else t.volunteer_id for t in kept_objects]))
        cols.code.append(col([codes.code(t.household_code or "") for t in kept_objects]))
        cols.source.append(np.full(len(kept_objects), -1, np.int64))
        cols.row.append(np.arange(len(kept_objects), dtype=np.int64))
    household, township, kind = cols.column("household"), cols.column("township"), cols.column("kind")
    if not len(household):
        return {}
    occasion, member, due, status = (cols.column(n) for n in ("occasion", "member", "due", "status"))
    volunteer, source, row = cols.column("volunteer"), cols.column("source"), cols.column("row")

    # the sort key without its last part, packed in one integer: urgency, due day, code, kind
    prefix = _URGENCY[status]
    prefix = (prefix << 22) + (due - due.min())
    prefix = (prefix << 24) + codes.ranks()[cols.column("code")]
    prefix = (prefix << 8) + kinds.ranks()[kind]
    # one line per (household, township, kind, occasion, member): `merge_same`
    _, group = np.unique(np.stack([household, township, kind, occasion, member]), axis=1, return_inverse=True)
    group = group.reshape(-1)

    # `route`: a volunteer hears about their households; the coordinators about what has no
    # (active) volunteer, what is late, and the class invitation
    helped = np.isin(volunteer, np.array(sorted(active), np.int64)) & (volunteer != NONE)
    is_class = kind == kinds.of.get(p.CLASS_INVITATION, -1)
    late = np.where(status == STATUS_CODE[p.OVERDUE], day_of(today) - due, 0) >= policy.overdue_escalation_days
    own = np.nonzero(~is_class & helped)[0]
    escalated = np.nonzero(is_class | ~helped | late)[0]
    esc_people, esc_rows = [], []
    for town in np.unique(township[escalated]).tolist():
        rows_here = escalated[township[escalated] == town]
        for person in coordinators.get(town, []):
            esc_people.append(np.full(len(rows_here), person, np.int64))
            esc_rows.append(rows_here)

    inboxes: dict[int, Inbox] = {}
    wanted: list[tuple[int, bool, np.ndarray]] = []  # (person, escalated?, rows kept)
    for escalated_part, people, rows in (
            (False, volunteer[own], own),
            (True, np.concatenate(esc_people) if esc_people else np.empty(0, np.int64),
             np.concatenate(esc_rows) if esc_rows else np.empty(0, np.int64))):
        for person, total, kept in _first_lines(people, rows, prefix, group, max_lines):
            inbox = inboxes.setdefault(person, Inbox())
            if escalated_part:
                inbox.escalated_total = total
            else:
                inbox.own_total = total
            wanted.append((person, escalated_part, kept))

    # task objects for the kept rows only, each built once
    all_kept = np.unique(np.concatenate([k for _, _, k in wanted])) if wanted else np.empty(0, np.int64)
    task_of: dict[int, p.PlannedTask] = {}
    for number, batch in enumerate(batches):
        mine = all_kept[source[all_kept] == number]
        task_of.update(zip(mine.tolist(), batch.tasks_at(row[mine], short_lived=True), strict=True))
    for r in all_kept[source[all_kept] == -1].tolist():
        task_of[r] = kept_objects[row[r]]
    for person, escalated_part, kept in wanted:
        tasks = [task_of[r] for r in kept.tolist()]
        if escalated_part:
            inboxes[person].escalated = tasks
        else:
            inboxes[person].own = tasks
    return inboxes


def _first_lines(people: np.ndarray, rows: np.ndarray, prefix: np.ndarray, group: np.ndarray,
                 max_lines: int) -> list[tuple[int, int, np.ndarray]]:
    """Per person: how many distinct lines they have, and the rows that can be among their first
    `max_lines` (every row whose key prefix is not after that of their `max_lines`-th line)."""
    if not len(rows):
        return []
    pre = prefix[rows]
    order = np.lexsort((pre, people))
    people, rows, pre, grp = people[order], rows[order], pre[order], group[rows][order]
    starts = np.concatenate([[0], np.nonzero(np.diff(people))[0] + 1])
    who = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(people))))
    # a line's first row in this order (its smallest prefix)
    _, first_at = np.unique(people * (int(group.max()) + 1) + grp, return_index=True)
    first = np.zeros(len(people), bool)
    first[first_at] = True
    lines = np.cumsum(first)
    lines -= np.concatenate([[0], lines[starts[1:] - 1]])[who]  # count per person
    totals = np.add.reduceat(first.astype(np.int64), starts)
    cutoff = np.full(len(starts), _MAX, np.int64)
    at_limit = np.nonzero(first & (lines == max_lines))[0]
    cutoff[who[at_limit]] = pre[at_limit]
    keep = pre <= cutoff[who]
    out = []
    bounds = np.append(starts, len(people))
    for i, start in enumerate(starts.tolist()):
        end = bounds[i + 1]
        out.append((int(people[start]), int(totals[i]), rows[start:end][keep[start:end]]))
    return out
