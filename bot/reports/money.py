"""Money: holiday-visit spending per household against its entitlement, and the budget lines.

Holiday-visit spending is what volunteers recorded as money given (`Visit.money_fen`) on done
visits recorded with an occasion (any festival, 5·29 or a birthday). A household's entitlement
for the period is its yearly amount (hardship or not, from `[reports]`) times the period's
calendar months from its enrolment (or the period's start) to the period's end, ÷ 12 — to the
end of the period, since a budget is planned for the whole period, but never for months before
the household was in the program (issue 18: a household is owed nothing before it joined).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, literal, select

from bot.reports.figures import NOT_HELD
from bot.reports.frame import LEVEL_COLUMNS, Frame
from bot.reports.model import Column, Section, Table, pct, yuan
from bot.reports.periods import months_between
from storage.models import Activity


def _n(value: Any) -> int:
    return int(value or 0)


def spending_by_household(f: Frame) -> Any:
    p = f.period
    v = f.visits.c  # the period's done visits
    return select(v.household_id.label("household_id"), func.sum(v.money_fen).label("spent")).where(
        v.occasion.is_not(None), v.money_fen > 0, v.visited_on >= p.start, v.visited_on <= p.end,
    ).group_by(v.household_id).subquery("spent")


def entitlement_fen(f: Frame) -> Any:
    """SQL: each household's entitlement for the period, in fen.

    Its share of a year is the period's calendar months from its enrolment day (when later than
    the period's start) to the period's end, a part month by its days. One CASE branch per
    distinct enrolment day within the period: at most the period's days, and households share
    them."""
    d, p, c = f.dims, f.period, f.config
    days = f.session.scalars(select(d.c.enrolled_on).distinct().where(
        d.c.enrolled_on > p.start, d.c.enrolled_on <= p.end)).all()
    whole = p.months() / 12
    share = case(*((d.c.enrolled_on == day, months_between(day, p.end) / 12) for day in sorted(days)),
                 else_=whole) if days else literal(whole)
    yearly = case((d.c.hardship.is_(True), c.hardship_entitlement_yuan * 100), else_=c.standard_entitlement_yuan * 100)
    return yearly * share


def holiday_money(f: Frame) -> Section:
    d = f.dims
    m = spending_by_household(f)
    ent = entitlement_fen(f)
    spent = func.coalesce(m.c.spent, 0)
    grouped = f.grouped({
        "households": func.count(d.c.household_id),
        "entitled": func.sum(ent),
        "hardship": func.sum(case((d.c.hardship.is_(True), 1), else_=0)),
        "spent": func.sum(spent),
        "paid": func.sum(case((spent > 0, 1), else_=0)),
        "over": func.sum(case((spent > ent + 0.5, 1), else_=0)),
    }, m)
    summary = Table("money", "节日走访经费（按户应得对比）", [
        *LEVEL_COLUMNS, Column("households", "户数"), Column("hardship", "困难家庭户数"),
        Column("entitled", "期内应得（元）", "yuan"), Column("spent", "已记录支出（元）", "yuan"),
        Column("spent_pct", "支出占应得（%）", "pct"), Column("paid", "有支出户数"),
        Column("over", "超出应得户数")])
    for group, v in grouped:
        households, hardship = _n(v["households"]), _n(v["hardship"])
        entitled = float(v["entitled"] or 0)
        summary.add(level=group.level, name=group.name, households=households, hardship=hardship,
                    entitled=yuan(entitled), spent=yuan(_n(v["spent"])),
                    spent_pct=pct(_n(v["spent"]), entitled), paid=_n(v["paid"]), over=_n(v["over"]))
    households = _n(grouped[0][1]["households"]) if grouped else 0
    detail = Table("money_households", "节日走访经费（逐户）", [
        Column("code", "户编号", "text"), Column("township", "乡镇", "text"),
        Column("hardship", "困难家庭", "text"), Column("entitled", "期内应得（元）", "yuan"),
        Column("spent", "已记录支出（元）", "yuan"), Column("balance", "余额（元）", "yuan")])
    query = select(d.c.code, d.c.township_id, d.c.hardship, spent, ent).select_from(
        d.outerjoin(m, m.c.household_id == d.c.household_id))
    over = _n(grouped[0][1]["over"]) if grouped else 0
    limit = f.detail_rows
    if households <= limit:
        query = query.order_by(d.c.code)
    else:  # a province: the households over their entitlement, largest excess first
        query = query.where(spent > ent + 0.5).order_by((spent - ent).desc(), d.c.code).limit(limit)
    rows = f.session.connection().execute(query) if households <= limit or over else []
    for code, tid, hardship, spent_fen, entitled_fen in rows:
        entitled = float(entitled_fen or 0)  # PostgreSQL gives a Decimal
        detail.add(code=code, township=f.township_names.get(tid, ""), hardship="是" if hardship else "否",
                   entitled=yuan(entitled), spent=yuan(spent_fen), balance=yuan(entitled - _n(spent_fen)))
    if households > limit:
        detail.title = "节日走访经费（超出应得的家庭）"
        detail.note = (f"本报表范围有 {households:,} 户，超过 {limit:,} 户，逐户表只列支出超出应得的 {over:,} 户"
                       f"（按超出金额从多到少{'，列出前 ' + format(limit, ',') + ' 户' if over > limit else ''}）；"
                       "各户的完整清单请按乡镇出报表（--township 乡镇名）。")
    c = f.config
    return Section("money", "节日走访经费", [summary, detail], definition=(
        "已记录支出：期内已完成、记录了节日（含 5·29、生日）的走访中登记的慰问金额。期内应得：困难家庭"
        f"每户每年 {c.hardship_entitlement_yuan:g} 元、其他家庭 {c.standard_entitlement_yuan:g} 元，"
        f"按本期日历月数折算（本期 {f.period.months():.2f} 个月，按整个期间计；期内纳入项目的家庭从纳入日期起算，"
        "之前的月份不计）。"
        "超出应得户数：支出高于应得的家庭。礼物只记文字，不折算金额。"))


def activity_cost_fen(f: Frame) -> int:
    a = Activity
    conds = [a.status.not_in(NOT_HELD), a.cancelled_at.is_(None),
             a.starts_at >= f.start_instant, a.starts_at < f.end_instant]
    if f.scope.township_id is not None:
        conds.append(a.township_id == f.scope.township_id)
    return _n(f.session.scalar(select(func.coalesce(func.sum(a.cost_fen), 0)).where(*conds)))


def budget(f: Frame, holiday_spent_fen: int) -> Section:
    """The plan's budget lines and sources, pro-rated to the period, against what was recorded."""
    share = f.period.months() / 12
    county = f.scope.township_id is None
    recorded = {"holiday_visits": holiday_spent_fen, "activities": activity_cost_fen(f)}
    lines = Table("budget", "预算执行（按预算项目）", [
        Column("line", "预算项目", "text"), Column("annual", "年度预算（元）", "yuan"),
        Column("sources", "资金来源", "text"), Column("period_budget", "本期预算（元）", "yuan"),
        Column("recorded", "暖心记录支出（元）", "yuan"), Column("recorded_pct", "执行率（%）", "pct"),
        Column("note", "说明", "text")])
    names = {s.key: s.name for s in f.config.sources}
    total_annual = total_recorded = 0.0
    for line in f.config.budget_lines:
        period_budget = line.amount_yuan * share
        got = recorded.get(line.recorded) if line.recorded else None
        total_annual += line.amount_yuan
        total_recorded += (got or 0) / 100
        lines.add(
            line=line.name, annual=round(line.amount_yuan, 2) if county else None,
            sources="、".join(f"{names.get(k, k)} {v / 10000:g} 万元" for k, v in line.sources.items()),
            period_budget=round(period_budget, 2) if county else None,
            recorded=yuan(got) if got is not None else None,
            recorded_pct=pct(got / 100, period_budget) if (got is not None and county) else None,
            note="" if line.recorded else "暖心不记录此项，请以财务账目为准")
    lines.add(line="合计", annual=round(total_annual, 2) if county else None, sources="",
              period_budget=round(total_annual * share, 2) if county else None,
              recorded=round(total_recorded, 2), recorded_pct=None, note="")
    sources = Table("budget_sources", "资金来源", [
        Column("source", "来源", "text"), Column("annual", "年度金额（元）", "yuan"),
        Column("period_budget", "本期金额（元）", "yuan"), Column("lines", "用于", "text")])
    for source in f.config.sources:
        used = [line.name.split("（")[0] for line in f.config.budget_lines if source.key in line.sources]
        sources.add(source=source.name, annual=round(source.amount_yuan, 2),
                    period_budget=round(source.amount_yuan * share, 2), lines="、".join(used))
    tables = [lines, sources] if county else [lines]
    return Section("budget", "预算与资金来源", tables, definition=(
        f"年度预算与资金来源见实施方案；本期预算 = 年度预算 × 本期月数 ÷ 12（本期 {f.period.months():.2f} 个月）。"
        "暖心记录支出只包括志愿者记录的节日走访慰问金和已举办活动登记的费用；其余项目暖心不记录。"
        + ("" if county else "乡镇报表只列本乡镇记录的支出，预算为县级统筹，不分到乡镇。")))
