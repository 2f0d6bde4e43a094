"""What every figure shares: the period, the scope's households and how rows are grouped.

The households of a report are one subquery (`dims`): each household in scope with its
township and its contact volunteer for the period (the latest contact assignment that overlaps
the period). Figures join their per-household aggregates to it and group in SQL three ways:
the whole scope, each township, each contact volunteer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Subquery,
    Table,
    and_,
    func,
    insert,
    or_,
    select,
    true,
)
from sqlalchemy import Column as SAColumn
from sqlalchemy.orm import Session

from bot.reports.config import ReportConfig
from bot.reports.model import Column
from bot.reports.periods import Period, months_between
from bot.reports.sqlfuncs import epoch_day, local_day
from storage.models import ContactAssignment, Household, Person, Township, Visit, VisitOutcome

TOTAL, TOWNSHIP, VOLUNTEER = "合计", "乡镇", "志愿者"
UNASSIGNED = "（未分配联系人）"
LEVEL_COLUMNS = [Column("level", "层级", "text"), Column("name", "名称", "text")]
# Longest listing a report prints: volunteer rows of a table, the households of the money table.
# A county (hundreds to a few thousand households) is always listed whole; a province is summed.
DETAIL_ROWS = 20_000
NO_DAY = -(1 << 40)  # a missing date among day numbers (dates before 1970 are negative)


@dataclass(frozen=True)
class Scope:
    """The whole county, or one township."""

    county_name: str
    township_id: int | None = None
    township_name: str | None = None

    @property
    def label(self) -> str:
        return self.township_name or self.county_name


@dataclass(frozen=True)
class Group:
    level: str
    key: int | None
    name: str


@dataclass
class Frame:
    session: Session
    period: Period
    as_of: date
    scope: Scope
    tz: ZoneInfo
    config: ReportConfig
    with_planner: bool = True  # the planner's task snapshot (slowest part; chat leaves it out)
    _temporary: list[Table] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)  # said once at the report's head (see `note`)

    # ------------------------------------------------------------------ time

    @property
    def elapsed_end(self) -> date | None:
        return self.period.elapsed_end(self.as_of)

    def instant(self, day: date) -> datetime:
        """The UTC instant a local calendar day begins."""
        return datetime.combine(day, time(0), tzinfo=self.tz).astimezone(UTC)

    @property
    def start_instant(self) -> datetime:
        return self.instant(self.period.start)

    @property
    def end_instant(self) -> datetime:
        """The first instant after the period."""
        return self.instant(self.period.end + timedelta(days=1))

    @property
    def as_of_instant(self) -> datetime:
        """The end of the as-of day: what is due by then and not done is overdue."""
        return self.instant(self.as_of + timedelta(days=1))

    @cached_property
    def offset_minutes(self) -> int:
        offset = datetime.combine(self.period.start, time(12), tzinfo=self.tz).utcoffset()
        return int(offset.total_seconds() // 60) if offset else 0

    def day_of(self, ts: Any) -> ColumnElement[date]:
        """The local calendar day of a UTC timestamp column, in SQL."""
        return local_day(ts, self.tz.key, self.offset_minutes)

    # ------------------------------------------------------------ households

    def _dims_query(self) -> Select[Any]:
        p = self.period
        ranked = (
            select(ContactAssignment.household_id, ContactAssignment.volunteer_id,
                   func.row_number().over(
                       partition_by=ContactAssignment.household_id,
                       order_by=(ContactAssignment.started_on.desc(), ContactAssignment.id.desc()),
                   ).label("rn"))
            .where(ContactAssignment.started_on <= p.end,
                   or_(ContactAssignment.ended_on.is_(None), ContactAssignment.ended_on >= p.start))
            .subquery("contact")
        )
        query = (
            select(Household.id.label("household_id"), Household.code, Household.township_id,
                   Household.hardship, Household.visit_preference, Household.enrolled_on,
                   ranked.c.volunteer_id)
            .outerjoin(ranked, and_(ranked.c.household_id == Household.id, ranked.c.rn == 1))
            .where(or_(Household.erased_at.is_(None), Household.erased_at > self.start_instant),
                   or_(Household.enrolled_on.is_(None), Household.enrolled_on <= p.end))
        )
        if self.scope.township_id is not None:
            query = query.where(Household.township_id == self.scope.township_id)
        return query

    @cached_property
    def dims(self) -> Any:
        """The scope's households with their township and contact volunteer, computed once.

        Why a temporary table: every figure joins these rows, and computing the latest contact
        assignment (a window over every assignment) again for each of a dozen figures was the
        largest part of a province report. The table lives on the report's connection; `close()`
        drops it (it goes with the connection anyway)."""
        name = f"report_dims_{uuid.uuid4().hex[:12]}"
        table = Table(name, MetaData(),
                      SAColumn("household_id", Integer, primary_key=True), SAColumn("code", String(32)),
                      SAColumn("township_id", Integer), SAColumn("hardship", Boolean),
                      SAColumn("visit_preference", String(16)), SAColumn("enrolled_on", Date),
                      SAColumn("volunteer_id", Integer), prefixes=["TEMPORARY"])
        connection = self.session.connection()
        table.create(connection)
        connection.execute(insert(table).from_select(
            ["household_id", "code", "township_id", "hardship", "visit_preference", "enrolled_on",
             "volunteer_id"], self._dims_query()))
        # every figure groups by (township, volunteer): read in that order, no sort per figure
        Index(f"{name}_cell", table.c.township_id, table.c.volunteer_id).create(connection)
        self._temporary.append(table)
        return table.alias("dims")

    @cached_property
    def visits(self) -> Any:
        """The scope's completed visits around the period, copied once into a temporary table.

        Why: five figures read visits (served, weekly and holiday greetings, birthdays, money),
        and each scanning the whole table (a province has millions of rows, a year of them)
        cost more than the rest of its query. The copy holds only done visits, from the
        period's start to its end widened by the days a figure looks past them (an ISO week
        reaches 3 days beyond, a birthday window its opening and closing days)."""
        policy = self.config.policy
        lo = self.period.start - timedelta(days=max(7, policy.birthday_opens_days_before))
        hi = self.period.end + timedelta(days=max(7, policy.birthday_closes_days_after))
        v = Visit.__table__.c
        table = Table(f"report_visits_{uuid.uuid4().hex[:12]}", MetaData(),
                      SAColumn("household_id", Integer), SAColumn("visited_on", Date),
                      SAColumn("kind", v.kind.type), SAColumn("occasion", v.occasion.type),
                      SAColumn("money_fen", Integer), prefixes=["TEMPORARY"])
        connection = self.session.connection()
        table.create(connection)
        connection.execute(insert(table).from_select(
            ["household_id", "visited_on", "kind", "occasion", "money_fen"],
            select(Visit.household_id, Visit.visited_on, Visit.kind, Visit.occasion, Visit.money_fen).where(
                self.in_scope(Visit.household_id), Visit.outcome == VisitOutcome.DONE,
                Visit.visited_on >= lo, Visit.visited_on <= hi)))
        self._temporary.append(table)
        return table.alias("done_visits")

    def close(self) -> None:
        """Drop what the report made on its connection (the households and visits tables above)."""
        connection = self.session.connection()
        for table in self._temporary:
            table.drop(connection)
        self._temporary.clear()
        self.__dict__.pop("dims", None)
        self.__dict__.pop("visits", None)

    def in_scope(self, household_id: ColumnElement[Any]) -> ColumnElement[bool]:
        """A cheap filter for source rows (visits, readings…): the township's households, or all."""
        if self.scope.township_id is None:
            return true()
        return household_id.in_(select(Household.id).where(Household.township_id == self.scope.township_id))

    def household_ids(self) -> Any:
        """The scope's household ids as a subquery, for IN (...) filters."""
        return select(self.dims.c.household_id)

    @cached_property
    def township_names(self) -> dict[int, str]:
        return dict(self.session.execute(select(Township.id, Township.name)).all())

    @cached_property
    def _volunteer_names(self) -> dict[int, str]:
        """Names of the scope's contact volunteers, read once per report (every table needs them)."""
        d = self.dims
        return dict(self.session.execute(select(Person.id, Person.name).where(
            Person.id.in_(select(d.c.volunteer_id).where(d.c.volunteer_id.is_not(None)).distinct()))).all())

    def volunteer_names(self, ids: set[int]) -> dict[int, str]:
        names = self._volunteer_names
        missing = sorted(i for i in ids if i not in names)
        for i in range(0, len(missing), 10_000):  # a province has more volunteers than one statement's parameters
            names.update(self.session.execute(
                select(Person.id, Person.name).where(Person.id.in_(missing[i:i + 10_000]))).all())
        return {i: names[i] for i in ids if i in names}

    @property
    def detail_rows(self) -> int:
        """The longest listing this report prints (DETAIL_ROWS)."""
        return DETAIL_ROWS

    @property
    def total_group(self) -> Group:
        return Group(TOTAL, None, self.scope.label)

    def note(self, text: str) -> None:
        """A remark for the report's header (said once however many tables it concerns)."""
        if text not in self.notes:
            self.notes.append(text)

    def grouped(self, exprs: dict[str, ColumnElement[Any]], metrics: Subquery | None = None,
                ) -> list[tuple[Group, dict[str, Any]]]:
        """Aggregate `exprs` over the scope's households: in total, by township, by volunteer.

        One query groups by (township, volunteer); the three levels are rolled up from its rows,
        which is exact because every figure passed here is a count or a sum.
        """
        d = self.dims
        base = d if metrics is None else d.outerjoin(metrics, metrics.c.household_id == d.c.household_id)
        cols = [expr.label(name) for name, expr in exprs.items()]
        result = self.session.connection().execute(
            select(d.c.township_id, d.c.volunteer_id, *cols).select_from(base)
            .group_by(d.c.township_id, d.c.volunteer_id))
        rows = result.cursor.fetchall() if result.cursor is not None else []
        result.close()
        return self._rollup([(r[0], r[1], r[2:]) for r in rows], list(exprs))

    def _rollup(self, cells: list[tuple[int, int | None, Any]], keys: list[str],
                ) -> list[tuple[Group, dict[str, Any]]]:
        """Sum (township, volunteer, values) cells into the total, township and volunteer rows.

        With arrays: a province has a hundred thousand (township, volunteer) cells per figure.
        Past DETAIL_ROWS volunteers the volunteer rows are left out (the report says so): a
        province's report stays a size people read and memory holds; a township's lists them."""
        width = len(keys)
        n = len(cells)
        tids = np.fromiter((-1 if c[0] is None else c[0] for c in cells), dtype=np.int64, count=n)
        vids = np.fromiter((-1 if c[1] is None else c[1] for c in cells), dtype=np.int64, count=n)
        values = np.zeros((n, width))
        if n:
            values = np.nan_to_num(np.array([[float(v) if v is not None else 0.0 for v in c[2]] for c in cells],
                                            dtype=np.float64).reshape(n, width))

        def sums_by(groups: np.ndarray) -> tuple[list[int], list[dict[str, Any]]]:
            keys_of, inverse = np.unique(groups, return_inverse=True)
            inverse = inverse.ravel()
            out = np.zeros((len(keys_of), width))
            for j in range(width):
                out[:, j] = np.bincount(inverse, weights=values[:, j], minlength=len(keys_of))
            return keys_of.tolist(), rows_of(out)

        def rows_of(sums: np.ndarray) -> list[dict[str, Any]]:
            """Each row's values as dicts; a column of counts comes back as ints."""
            columns = [sums[:, j].astype(np.int64).tolist() if np.array_equal(sums[:, j], np.round(sums[:, j]))
                       else sums[:, j].tolist() for j in range(width)]
            return [dict(zip(keys, values_of, strict=True)) for values_of in zip(*columns, strict=True)] \
                if width else [{} for _ in range(len(sums))]

        out: list[tuple[Group, dict[str, Any]]] = [(self.total_group, rows_of(values.sum(axis=0).reshape(1, width))[0])]
        if self.scope.township_id is None:
            town_keys, town_rows = sums_by(tids)
            towns = [(Group(TOWNSHIP, k if k != -1 else None, self.township_names.get(k, str(k))), v)
                     for k, v in zip(town_keys, town_rows, strict=True)]
            out.extend(sorted(towns, key=lambda g: g[0].name))
        vol_keys, vol_rows = sums_by(vids)
        if len(vol_keys) > self.detail_rows:
            self.note(f"本报表范围有 {len(vol_keys):,} 位联系志愿者，超过 {self.detail_rows:,} 位，各表不逐人列出志愿者行；"
                      "按乡镇出报表（--township 乡镇名）可以看到每位志愿者。")
            return out
        groups = self._volunteer_groups(vol_keys)
        order = sorted(range(len(vol_keys)), key=lambda i: groups[vol_keys[i]][0])
        out.extend((groups[vol_keys[i]][1], vol_rows[i]) for i in order)
        return out

    def _volunteer_groups(self, keys: list[int]) -> dict[int, tuple[tuple[bool, str], Group]]:
        """Each volunteer's row heading and place in the order (by name, unassigned last), made
        once per report: every table lists the same volunteers."""
        known = self.__dict__.setdefault("_groups_by_volunteer", {})
        missing = [k for k in keys if k not in known]
        if missing:
            names = self.volunteer_names({k for k in missing if k != -1})
            for k in missing:
                group = Group(VOLUNTEER, k, names.get(k, UNASSIGNED)) if k != -1 else Group(VOLUNTEER, None, UNASSIGNED)
                known[k] = ((group.key is None, group.name), group)
        return known

    def household_months(self) -> dict[tuple[str, int | None], float]:
        """Months each row's households were in the program in the elapsed period: from the
        period's start or a later enrolment, a part month by its share of days ((level, key) ->
        household-months). Computed once per distinct enrolment day (households share them)."""
        hids, _cell_of, _cells, enrolled = self._cells
        end = self.elapsed_end
        days, which = np.unique(enrolled, return_inverse=True)
        epoch = date(1970, 1, 1)
        months = []
        for day in days.tolist():
            since = self.period.start if day == NO_DAY else max(self.period.start, epoch + timedelta(days=day))
            months.append(months_between(since, end) if end is not None and since <= end else 0.0)
        weights = np.array(months, dtype=np.float64)[which.ravel()] if len(hids) else np.zeros(0)
        return {(group.level, group.key): values["months"]
                for group, values in self.regroup({"months": (hids, weights)})}

    def int_rows(self, query: Any, width: int) -> np.ndarray:
        """An all-integer query's rows as an (n, width) array, read from the driver's cursor in
        slices: no row objects, and never a province's rows as Python tuples all at once."""
        result = self.session.connection().execute(query)
        parts = []
        try:
            while result.cursor is not None and (rows := result.cursor.fetchmany(50_000)):
                parts.append(np.array(rows, dtype=np.int64).reshape(len(rows), width))
        finally:
            result.close()
        return np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.int64)

    @cached_property
    def _cells(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int | None]], np.ndarray]:
        """(household ids sorted, each one's cell index, the (township, volunteer) cells, each
        household's enrolment day number or NO_DAY)."""
        d = self.dims
        table = self.int_rows(select(d.c.household_id, d.c.township_id, func.coalesce(d.c.volunteer_id, -1),
                                     func.coalesce(epoch_day(d.c.enrolled_on), NO_DAY)).order_by(d.c.household_id), 4)
        cells, inverse = np.unique(table[:, 1] * (1 << 32) + table[:, 2] + 1, return_inverse=True)  # one key each
        return table[:, 0], inverse.ravel(), [(int(c >> 32), int(c & 0xFFFFFFFF) - 1 if c & 0xFFFFFFFF else None)
                                              for c in cells.tolist()], table[:, 3]

    def regroup(self, entries: dict[str, tuple[np.ndarray, np.ndarray | None]],
                ) -> list[tuple[Group, dict[str, Any]]]:
        """Sum per-household entries computed outside SQL into the same groups as `grouped`:
        for each figure, (household ids, weights; None = 1 each), a household may appear
        many times; ids outside the scope are ignored. Arrays throughout: a province's
        households cost a few array operations, not a Python loop over each."""
        hids, cell_of, cells, _enrolled = self._cells
        sums = np.zeros((len(cells), len(entries)))
        for j, (ids, weights) in enumerate(entries.values()):
            if not len(ids) or not len(hids):
                continue
            at = np.searchsorted(hids, ids).clip(0, len(hids) - 1)
            inside = hids[at] == ids
            w = None if weights is None else np.asarray(weights, dtype=np.float64)[inside]
            sums[:, j] = np.bincount(cell_of[at[inside]], weights=w, minlength=len(cells))
        return self._rollup([(tid, vid, row) for (tid, vid), row in zip(cells, sums.tolist(), strict=True)],
                            list(entries))

