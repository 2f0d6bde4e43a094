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
from bot.reports.sqlfuncs import local_day
from storage.models import ContactAssignment, Household, Person, Township

TOTAL, TOWNSHIP, VOLUNTEER = "合计", "乡镇", "志愿者"
UNASSIGNED = "（未分配联系人）"
LEVEL_COLUMNS = [Column("level", "层级", "text"), Column("name", "名称", "text")]


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
        self._temporary.append(table)
        return table.alias("dims")

    def close(self) -> None:
        """Drop what the report made on its connection (the households table above)."""
        connection = self.session.connection()
        for table in self._temporary:
            table.drop(connection)
        self._temporary.clear()
        self.__dict__.pop("dims", None)

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

    def volunteer_names(self, ids: set[int]) -> dict[int, str]:
        wanted = sorted(ids)
        out: dict[int, str] = {}
        for i in range(0, len(wanted), 10_000):  # a province has more volunteers than one statement's parameters
            out.update(self.session.execute(
                select(Person.id, Person.name).where(Person.id.in_(wanted[i:i + 10_000]))).all())
        return out

    @property
    def total_group(self) -> Group:
        return Group(TOTAL, None, self.scope.label)

    def grouped(self, exprs: dict[str, ColumnElement[Any]], metrics: Subquery | None = None,
                ) -> list[tuple[Group, dict[str, Any]]]:
        """Aggregate `exprs` over the scope's households: in total, by township, by volunteer.

        One query groups by (township, volunteer); the three levels are rolled up from its rows,
        which is exact because every figure passed here is a count or a sum.
        """
        d = self.dims
        base = d if metrics is None else d.outerjoin(metrics, metrics.c.household_id == d.c.household_id)
        cols = [expr.label(name) for name, expr in exprs.items()]
        rows = self.session.execute(
            select(d.c.township_id, d.c.volunteer_id, *cols).select_from(base)
            .group_by(d.c.township_id, d.c.volunteer_id)).all()
        return self._rollup([(r[0], r[1], r[2:]) for r in rows], list(exprs))

    def _rollup(self, cells: list[tuple[int, int | None, Any]], keys: list[str],
                ) -> list[tuple[Group, dict[str, Any]]]:
        """Sum (township, volunteer, values) cells into the total, township and volunteer rows."""
        width = len(keys)
        sums: dict[tuple[str, int | None], list[Any]] = {(TOTAL, None): [0] * width}
        county = self.scope.township_id is None
        for tid, vid, values in cells:
            clean = [v or 0 for v in values]
            for target in ((TOTAL, None), (VOLUNTEER, vid), (TOWNSHIP, tid)) if county else \
                    ((TOTAL, None), (VOLUNTEER, vid)):
                bucket = sums.get(target)
                if bucket is None:
                    sums[target] = list(clean)
                else:
                    for i in range(width):
                        bucket[i] += clean[i]
        totals = {target: dict(zip(keys, values, strict=True)) for target, values in sums.items()}
        names = self.volunteer_names({k for (lvl, k) in totals if lvl == VOLUNTEER and k})
        out: list[tuple[Group, dict[str, Any]]] = [(self.total_group, totals[(TOTAL, None)])]
        towns = [(Group(TOWNSHIP, k, self.township_names.get(k or 0, str(k))), v)
                 for (lvl, k), v in totals.items() if lvl == TOWNSHIP]
        vols = [(Group(VOLUNTEER, k, names.get(k, UNASSIGNED) if k else UNASSIGNED), v)
                for (lvl, k), v in totals.items() if lvl == VOLUNTEER]
        out.extend(sorted(towns, key=lambda g: g[0].name))
        out.extend(sorted(vols, key=lambda g: (g[0].key is None, g[0].name)))
        return out

    def household_months(self) -> dict[tuple[str, int | None], float]:
        """Months each row's households were in the program in the elapsed period: from the
        period's start or a later enrolment, a part month by its share of days ((level, key) ->
        household-months). Households share enrolment days, so this is one small grouped query."""
        end = self.elapsed_end
        d = self.dims
        cells = []
        for tid, vid, enrolled, n in self.session.execute(
                select(d.c.township_id, d.c.volunteer_id, d.c.enrolled_on, func.count())
                .group_by(d.c.township_id, d.c.volunteer_id, d.c.enrolled_on)):
            since = max(self.period.start, enrolled) if enrolled is not None else self.period.start
            cells.append((tid, vid, [n * months_between(since, end) if end is not None and since <= end else 0.0]))
        return {(group.level, group.key): values["months"] for group, values in self._rollup(cells, ["months"])}

    def groups_of(self) -> dict[int, tuple[int, int | None]]:
        """household id -> (township id, volunteer id), for figures computed outside SQL."""
        d = self.dims
        return {hid: (tid, vid) for hid, tid, vid in self.session.execute(
            select(d.c.household_id, d.c.township_id, d.c.volunteer_id))}

    def regroup(self, per_household: dict[int, dict[str, float]], keys: list[str],
                ) -> list[tuple[Group, dict[str, Any]]]:
        """Sum per-household values (computed in Python from bulk queries) into the same groups.

        Summed per (township, volunteer) cell with arrays first, so a province's hundred
        thousand households cost a few array operations, not a Python loop over each."""
        d = self.dims
        result = self.session.connection().execute(
            select(d.c.household_id, d.c.township_id, func.coalesce(d.c.volunteer_id, -1)))
        rows = result.cursor.fetchall() if result.cursor is not None else []
        result.close()
        if not rows:
            return self._rollup([], keys)
        table = np.array(rows, dtype=np.int64).reshape(len(rows), 3)
        empty: dict[str, float] = {}
        values = np.array([[per_household.get(hid, empty).get(k, 0) for k in keys] for hid in table[:, 0].tolist()]
                          if per_household else np.zeros((len(rows), len(keys))), dtype=np.float64)
        cells, inverse = np.unique(table[:, 1:], axis=0, return_inverse=True)
        sums = np.zeros((len(cells), len(keys)))
        np.add.at(sums, inverse.ravel(), values)
        return self._rollup([(tid, vid if vid != -1 else None, [_number(x) for x in row])
                             for (tid, vid), row in zip(cells.tolist(), sums.tolist(), strict=True)], keys)


def _number(value: float) -> float | int:
    """A sum of counts back as an int (the figures print counts as integers)."""
    return int(value) if float(value).is_integer() else value
