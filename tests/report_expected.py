"""Hand counts for the 2026-Q3 report of the demo county plus tests/report_seed.py.

Counted by hand from the seed's comments (see each table's notes); as of 2026-11-20, so the
whole quarter has elapsed: 13 ISO weeks, 3 whole months, one programme holiday (中秋 Sep 25),
a pro-rated holiday target of 8 × 1/9 = 0.89 (at least 1 greeting), entitlement 1/4 of a year.
"""

from __future__ import annotations

COUNTY = "青山县（演示）"
T, TW, V = "合计", "乡镇", "志愿者"

# table key -> (column keys, rows). Rows of grouped tables: (level, name, *values).
EXPECTED: dict[str, tuple[tuple[str, ...], list[tuple[object, ...]]]] = {
    # QX003 has no record in Q3; BY002 only attended an activity.
    "overview": (("level", "name", "households", "hardship", "paced", "refused", "served", "served_pct"), [
        (T, COUNTY, 7, 3, 1, 0, 6, 85.7),
        (TW, "清溪镇", 4, 2, 1, 0, 3, 75.0), (TW, "白云乡", 2, 1, 0, 0, 2, 100.0),
        (TW, "长乐镇", 1, 0, 0, 0, 1, 100.0),
        (V, "林晓燕", 3, 1, 1, 0, 2, 66.7), (V, "周建国", 1, 1, 0, 0, 1, 100.0),
        (V, "马春兰", 2, 1, 0, 0, 2, 100.0), (V, "黄志明", 1, 0, 0, 0, 1, 100.0)]),
    # greeted weeks: QX001 4, QX002 2, QX003 0, QX004 3, BY001 2, BY002 0, CL001 2.
    "greetings": (("level", "name", "households", "weeks", "expected", "greeted", "greeted_pct"), [
        (T, COUNTY, 7, 13, 91, 13, 14.3),
        (TW, "清溪镇", 4, 13, 52, 9, 17.3), (TW, "白云乡", 2, 13, 26, 2, 7.7),
        (TW, "长乐镇", 1, 13, 13, 2, 15.4),
        (V, "林晓燕", 3, 13, 39, 6, 15.4), (V, "周建国", 1, 13, 13, 3, 23.1),
        (V, "马春兰", 2, 13, 26, 2, 7.7), (V, "黄志明", 1, 13, 13, 2, 15.4)]),
    # 中秋 for QX001, QX004 and CL001; 七夕 is not a programme holiday; a failed greeting is none.
    "holidays": (("level", "name", "households", "greetings", "per_household", "target", "met", "met_pct"), [
        (T, COUNTY, 7, 3, 0.43, 0.89, 3, 42.9),
        (TW, "清溪镇", 4, 2, 0.5, 0.89, 2, 50.0), (TW, "白云乡", 2, 0, 0.0, 0.89, 0, 0.0),
        (TW, "长乐镇", 1, 1, 1.0, 0.89, 1, 100.0),
        (V, "林晓燕", 3, 1, 0.33, 0.89, 1, 33.3), (V, "周建国", 1, 1, 1.0, 0.89, 1, 100.0),
        (V, "马春兰", 2, 0, 0.0, 0.89, 0, 0.0), (V, "黄志明", 1, 1, 1.0, 0.89, 1, 100.0)]),
    # service days: QX001 4 (Jul met), QX002 3 (Sep met), QX004 2 (Aug met), BY001 2 (Jul met),
    # BY002 1, CL001 1; per household-month = days / (households × 3).
    "health": (("level", "name", "households", "service_days", "per_household_month", "target",
                "expected_months", "met_months", "met_pct"), [
        (T, COUNTY, 7, 13, 0.62, 2, 21, 4, 19.0),
        (TW, "清溪镇", 4, 9, 0.75, 2, 12, 3, 25.0), (TW, "白云乡", 2, 3, 0.5, 2, 6, 1, 16.7),
        (TW, "长乐镇", 1, 1, 0.33, 2, 3, 0, 0.0),
        (V, "林晓燕", 3, 7, 0.78, 2, 9, 2, 22.2), (V, "周建国", 1, 2, 0.67, 2, 3, 1, 33.3),
        (V, "马春兰", 2, 3, 0.5, 2, 6, 1, 16.7), (V, "黄志明", 1, 1, 0.33, 2, 3, 0, 0.0)]),
    # due: 李桂芳 8-02 (QX001), 吴金山 7-07 and 何翠英 9-09 (BY001); the 7-07 call was by phone.
    "birthdays": (("level", "name", "due", "done", "done_pct"), [
        (T, COUNTY, 3, 2, 66.7),
        (TW, "清溪镇", 1, 1, 100.0), (TW, "白云乡", 2, 1, 50.0), (TW, "长乐镇", 0, 0, None),
        (V, "林晓燕", 1, 1, 100.0), (V, "周建国", 0, 0, None), (V, "马春兰", 2, 1, 50.0),
        (V, "黄志明", 0, 0, None)]),
    # files: QX001, QX002 (BY001's only in October); assessed in Q3: QX001, QX002, CL001.
    "casework": (("level", "name", "households", "filed", "filed_pct", "assessed_period",
                  "assessed_ever", "assessed_pct"), [
        (T, COUNTY, 7, 2, 28.6, 3, 3, 42.9),
        (TW, "清溪镇", 4, 2, 50.0, 2, 2, 50.0), (TW, "白云乡", 2, 0, 0.0, 0, 0, 0.0),
        (TW, "长乐镇", 1, 0, 0.0, 1, 1, 100.0),
        (V, "林晓燕", 3, 2, 66.7, 2, 2, 66.7), (V, "周建国", 1, 0, 0.0, 0, 0, 0.0),
        (V, "马春兰", 2, 0, 0.0, 0, 0, 0.0), (V, "黄志明", 1, 0, 0.0, 1, 1, 100.0)]),
    "assessment_trend": (("month", "assessments", "grief_trauma", "healing", "acceptance",
                          "future_attitude"), [
        ("2026-07", 1, 4.0, 2.0, 3.0, 3.0), ("2026-08", 1, 5.0, 1.0, 1.0, 2.0),
        ("2026-09", 2, 3.5, 2.5, 2.0, 3.5)]),
    # BY001 5 h (phone call), QX004 36 h (marked), QX001 154 h (home visit), BY002 never.
    "danger": (("level", "name", "readings", "followed", "fast", "fast_pct", "not_followed",
                "median_hours"), [
        (T, COUNTY, 4, 3, 1, 25.0, 1, 36.0),
        (TW, "清溪镇", 2, 2, 0, 0.0, 0, 95.0), (TW, "白云乡", 2, 1, 1, 50.0, 1, 5.0),
        (V, "林晓燕", 1, 1, 0, 0.0, 0, 154.0), (V, "周建国", 1, 1, 0, 0.0, 0, 36.0),
        (V, "马春兰", 2, 1, 1, 50.0, 1, 5.0)]),
    # the cancelled and the draft activity count for nothing.
    "activities": (("level", "name", "held", "invited", "yes", "attended", "attended_pct", "cost"), [
        (T, COUNTY, 2, 6, 4, 3, 50.0, 1000.0),
        ("举办方", "全县", 1, 3, 2, 2, 66.7, 200.0), ("举办方", "清溪镇", 1, 3, 2, 1, 33.3, 800.0)]),
    "activity_list": (("date", "title", "type", "township", "invited", "yes", "attended", "cost"), [
        ("2026-08-15", "智能手机课", "class", "全县", 3, 2, 2, 200.0),
        ("2026-09-24", "中秋做月饼", "class", "清溪镇", 3, 2, 1, 800.0)]),
    # in at the end of Q3: 王德福, 钱月娥, 杨淑华 (of 11 living members).
    "optin": (("level", "name", "members", "opted", "opted_pct", "households", "households_opted"), [
        (T, COUNTY, 11, 3, 27.3, 7, 3),
        (TW, "清溪镇", 6, 1, 16.7, 4, 1), (TW, "白云乡", 3, 1, 33.3, 2, 1), (TW, "长乐镇", 2, 1, 50.0, 1, 1),
        (V, "林晓燕", 5, 1, 20.0, 3, 1), (V, "周建国", 1, 0, 0.0, 1, 0), (V, "马春兰", 3, 1, 33.3, 2, 1),
        (V, "黄志明", 2, 1, 50.0, 1, 1)]),
    "delivery": (("channel", "queued", "sending", "sent", "failed", "expired", "total", "sent_pct"), [
        ("合计", 1, 0, 2, 1, 1, 5, 50.0), ("console", 0, 0, 1, 0, 0, 1, 100.0),
        ("telegram", 1, 0, 0, 0, 1, 2, 0.0), ("wechat", 0, 0, 1, 1, 0, 2, 50.0)]),
    "delivery_kind": (("kind", "queued", "sending", "sent", "failed", "expired", "total", "sent_pct"), [
        ("合计", 1, 0, 2, 1, 1, 5, 50.0), ("alert", 0, 0, 0, 0, 1, 1, 0.0),
        ("greeting", 0, 0, 1, 1, 0, 2, 50.0), ("reminder", 1, 0, 0, 0, 0, 1, None),
        ("reply", 0, 0, 1, 0, 0, 1, 100.0)]),
    "tasks": (("level", "name", "due", "on_time", "late", "overdue", "on_time_pct"), [
        (T, COUNTY, 4, 2, 1, 1, 50.0),
        (TW, "清溪镇", 3, 1, 1, 1, 33.3), (TW, "白云乡", 1, 1, 0, 0, 100.0), (TW, "长乐镇", 0, 0, 0, 0, None),
        (V, "林晓燕", 2, 1, 1, 0, 50.0), (V, "周建国", 1, 0, 0, 1, 0.0), (V, "马春兰", 1, 1, 0, 0, 100.0),
        (V, "黄志明", 0, 0, 0, 0, None)]),
    # spent: QX001 200 + 500, QX002 100 (七夕), QX004 1600; entitlement 375 (hardship) / 250 a quarter.
    "money": (("level", "name", "households", "hardship", "entitled", "spent", "spent_pct", "paid", "over"), [
        (T, COUNTY, 7, 3, 2125.0, 2400.0, 112.9, 3, 2),
        (TW, "清溪镇", 4, 2, 1250.0, 2400.0, 192.0, 3, 2), (TW, "白云乡", 2, 1, 625.0, 0.0, 0.0, 0, 0),
        (TW, "长乐镇", 1, 0, 250.0, 0.0, 0.0, 0, 0),
        (V, "林晓燕", 3, 1, 875.0, 800.0, 91.4, 2, 1), (V, "周建国", 1, 1, 375.0, 1600.0, 426.7, 1, 1),
        (V, "马春兰", 2, 1, 625.0, 0.0, 0.0, 0, 0), (V, "黄志明", 1, 0, 250.0, 0.0, 0.0, 0, 0)]),
    "money_households": (("code", "township", "hardship", "entitled", "spent", "balance"), [
        ("BY001", "白云乡", "是", 375.0, 0.0, 375.0), ("BY002", "白云乡", "否", 250.0, 0.0, 250.0),
        ("CL001", "长乐镇", "否", 250.0, 0.0, 250.0), ("QX001", "清溪镇", "是", 375.0, 700.0, -325.0),
        ("QX002", "清溪镇", "否", 250.0, 100.0, 150.0), ("QX003", "清溪镇", "否", 250.0, 0.0, 250.0),
        ("QX004", "清溪镇", "是", 375.0, 1600.0, -1225.0)]),
    # a quarter of each annual line; recorded: holiday money 2400, activities 800 + 200.
    "budget": (("line", "annual", "period_budget", "recorded", "recorded_pct"), [
        ("节日走访慰问（困难家庭每户每年1500元，其他家庭1000元）", 150000.0, 37500.0, 2400.0, 6.4),
        ("主题活动", 50000.0, 12500.0, 1000.0, 8.0),
        ("意外伤害保险", 27400.0, 6850.0, None, None),
        ("志愿者误餐及交通补助", 87500.0, 21875.0, None, None),
        ("住院护理补贴保险（含社工护理费）", 35100.0, 8775.0, None, None),
        ("城乡居民基本养老保险", 100000.0, 25000.0, None, None),
        ("合计", 450000.0, 112500.0, 3400.0, None)]),
    "budget_sources": (("source", "annual", "period_budget"), [
        ("省计生协", 50000.0, 12500.0), ("市计生协", 150000.0, 37500.0), ("市财政", 50000.0, 12500.0),
        ("县财政", 200000.0, 50000.0)]),
}


def normalize(value: object) -> object:
    """Values compared across formats: '' and '—' are no value; numbers as floats."""
    if value is None or value == "" or value == "—":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return round(float(value), 2)
    text = str(value).strip()
    try:
        return round(float(text.replace(",", "")), 2)
    except ValueError:
        return text


def expected_rows(key: str) -> list[tuple[object, ...]]:
    """The expected rows, first row first, the rest in a fixed order (row order is not a figure)."""
    rows = [tuple(normalize(v) for v in row) for row in EXPECTED[key][1]]
    return rows[:1] + sorted(rows[1:], key=repr)


def picked(columns: list[str], rows: list[list[object]], key: str) -> list[tuple[object, ...]]:
    """Rows of a table read back from a file, limited to the expected columns, normalized."""
    wanted = EXPECTED[key][0]
    index = [columns.index(c) for c in wanted]
    out = [tuple(normalize(row[i]) for i in index) for row in rows]
    return out[:1] + sorted(out[1:], key=repr)
