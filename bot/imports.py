"""Importing the county's existing lists (families, volunteers) from CSV or XLSX.

A file is read whole, every row is checked, and only a file with no bad row is written — in one
transaction, so nothing of a failed file is half-imported. Bad rows are reported with their row
number (as the spreadsheet shows it; the header is row 1) and the reason. Re-importing a file
updates what it names and never duplicates: households are matched by 户编号, members by name
within the household, children by name within the household, staff by phone number.
Columns may use the English keys or the Chinese headers (`FAMILY_COLUMNS`, `VOLUNTEER_COLUMNS`).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import false, func, insert, select, update
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from bot.care.birthdays import CALENDAR_WORDS, LUNAR, SOLAR, parse_lunar_birthday
from storage.audit import record_audit_sync
from storage.models import (
    ContactAssignment,
    County,
    DeceasedChild,
    Household,
    HouseholdMember,
    Person,
    Role,
    Township,
    Village,
)

FAMILY_COLUMNS: dict[str, str] = {
    "household": "户编号", "township": "乡镇", "village": "村", "name": "姓名", "relation": "关系",
    "sex": "性别", "birth_date": "出生日期", "birthday_calendar": "生日历法",
    "lunar_birthday": "农历生日", "phone": "电话", "hardship": "困难家庭",
    "contact_volunteer": "联系志愿者", "child_name": "子女姓名", "child_birth_date": "子女出生日期",
    "child_death_date": "子女去世日期", "child_death_cause": "去世原因", "enrolled_on": "纳入日期",
}
VOLUNTEER_COLUMNS: dict[str, str] = {
    "name": "姓名", "phone": "电话", "township": "乡镇", "role": "角色", "skills": "技能",
}
REQUIRED = {"families": ("household", "township", "name", "relation"),
            "volunteers": ("name", "phone")}
COLUMNS = {"families": FAMILY_COLUMNS, "volunteers": VOLUNTEER_COLUMNS}

RELATIONS = {"father": "father", "父亲": "father", "父": "father", "mother": "mother",
             "母亲": "mother", "母": "mother", "grandchild": "grandchild", "孙子": "grandchild",
             "孙女": "grandchild", "孙子女": "grandchild", "外孙": "grandchild",
             "外孙女": "grandchild", "other": "other", "其他": "other"}
SEXES = {"男": "男", "女": "女", "male": "男", "female": "女", "m": "男", "f": "女"}
YES = {"是", "yes", "y", "1", "true", "有", "√"}
NO = {"否", "no", "n", "0", "false", "无", ""}
STAFF_ROLES = {"volunteer": Role.VOLUNTEER, "志愿者": Role.VOLUNTEER,
               "coordinator": Role.COORDINATOR, "协调员": Role.COORDINATOR,
               "admin": Role.ADMIN, "管理员": Role.ADMIN}
PHONE = re.compile(r"^\d{5,20}$")
MAX_TEXT = 200
IN_CHUNK = 5_000  # values bound in one IN (...): under every backend's parameter limit
HEADER_SEARCH_ROWS = 10  # a title or notes above the header row: look this far down for it
PHONE_SEPARATORS = re.compile(r"[\s\-‐‑‒–—－()（）.·]")
SCIENTIFIC = re.compile(r"^(\d)(?:\.(\d+))?[eE]\+?(\d{1,2})$")


class PhoneError(ValueError):
    """A phone cell that cannot be read as a number; the message says why, in both languages."""


def normalise_phone(text: str) -> str:
    """A phone number as digits only, however the spreadsheet wrote it.

    `138 0000 2212`, `138-0000-2212`, `+86 138…`, `0086138…`, full-width digits and a number that
    Excel stored as a float (`13800002212.0`, `1.3800002212E+10`) all become `13800002212`.
    Scientific notation that lost digits (`1.38E+10`: Excel's display of an 11-digit number in a
    CSV) is refused: the real number is gone, and a wrong number must never be saved.
    """
    raw = unicodedata.normalize("NFKC", text).strip()
    sci = SCIENTIFIC.match(raw)
    if sci:
        first, rest, power = sci.group(1), sci.group(2) or "", int(sci.group(3))
        if len(rest) < power:
            raise PhoneError(f"电话号码 {text!r} 被 Excel 写成了科学计数法，后几位已经丢失；请把电话列设为“文本”后重新填写 / "
                             f"phone {text!r} was saved by Excel in scientific notation and lost its last digits; "
                             "format the phone column as text and type the numbers again")
        digits = (first + rest)[:power + 1]
        if rest[power:].strip("0"):
            raise PhoneError(f"电话号码不对 / bad phone number {text!r}")
        raw = digits
    elif re.fullmatch(r"\d+\.0+", raw):
        raw = raw.split(".")[0]
    plus = raw.startswith("+")
    digits = PHONE_SEPARATORS.sub("", raw.lstrip("+"))
    if plus and digits.startswith("86"):
        digits = digits[2:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif len(digits) == 13 and digits.startswith("861"):
        digits = digits[2:]
    if not PHONE.match(digits):
        raise PhoneError(f"电话号码不对 / bad phone number {text!r}")
    return digits


def phone_or_error(text: str, errors: list[str]) -> str | None:
    if not text:
        return None
    try:
        return normalise_phone(text)
    except PhoneError as exc:
        errors.append(str(exc))
        return None


class ImportError_(Exception):
    """The file cannot be read at all (not its rows): unknown format, missing columns."""


@dataclass(frozen=True)
class RowError:
    row: int
    reason: str

    def __str__(self) -> str:
        return f"第 {self.row} 行 / row {self.row}: {self.reason}"


@dataclass
class ImportReport:
    rows: int = 0
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    applied: bool = False

    def count(self, bucket: str, what: str) -> None:
        target = {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}[bucket]
        target[what] = target.get(what, 0) + 1

    def compare(self, what: str, before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
        """Count an existing record as updated only if the file changed something in it."""
        self.count("updated" if before != after else "unchanged", what)


def _state(*objects: Any, fields: tuple[str, ...]) -> tuple[Any, ...]:
    """The values an import may change, to tell "updated" from "unchanged"."""
    return tuple(getattr(o, f, None) for o in objects for f in fields)


HOUSEHOLD_FIELDS = ("township_id", "village_id", "hardship", "enrolled_on")
PERSON_FIELDS = ("township_id", "phone")
MEMBER_ONLY_FIELDS = ("relation", "sex", "birth_date", "birthday_calendar", "lunar_birth_month", "lunar_birth_day",
                      "lunar_birth_leap")
MEMBER_FIELDS = PERSON_FIELDS + MEMBER_ONLY_FIELDS
CHILD_FIELDS = ("birth_date", "death_date", "death_cause")
STAFF_FIELDS = ("name", "role", "township_id", "skills", "active")


# ------------------------------------------------------------------ reading files


def _cell(value: Any) -> str:
    """A cell as text: Excel numbers that are whole (phone numbers) lose their '.0'."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_rows(path: Path) -> list[list[str]]:
    """All rows of a CSV (UTF-8 or GBK, as Excel saves it in China) or the first XLSX sheet."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            book = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises several kinds for a damaged file
            raise ImportError_(f"无法读取这个 Excel 文件 / cannot read this XLSX file ({type(exc).__name__})") from exc
        try:
            sheet = book.worksheets[0]
            return [[_cell(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        finally:
            book.close()
    if suffix in (".csv", ".txt"):
        raw = path.read_bytes()
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                text = raw.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise ImportError_("文件编码无法识别，请另存为 UTF-8 / unknown text encoding, save as UTF-8")
        return [[c.strip() for c in row] for row in csv.reader(io.StringIO(text))]
    raise ImportError_(f"只支持 .csv 和 .xlsx / only .csv and .xlsx files, not {suffix or 'no extension'}")


def _header_keys(kind: str, row: list[str]) -> list[str | None]:
    columns = COLUMNS[kind]
    by_header = {**{k: k for k in columns}, **{v: k for k, v in columns.items()}}
    return [by_header.get(h.strip().lower() if h.strip().lower() in columns else h.strip()) for h in row]


def records(kind: str, rows: list[list[str]]) -> list[tuple[int, dict[str, str]]]:
    """(row number, {english key: text}) for each non-empty data row.

    The header is the first of the top rows that names every required column, so a title
    ("青山县失独家庭名册") or notes above it are skipped; row numbers stay as the sheet shows them."""
    columns = COLUMNS[kind]
    if not rows or not any(any(c.strip() for c in row) for row in rows):
        raise ImportError_("文件是空的 / the file is empty")
    at, header = 0, _header_keys(kind, rows[0])
    for i, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        keys = _header_keys(kind, row)
        if all(k in keys for k in REQUIRED[kind]):
            at, header = i, keys
            break
    else:  # report against the row that looks most like a header
        best = max(range(min(len(rows), HEADER_SEARCH_ROWS)), key=lambda i: sum(k is not None for k in _header_keys(kind, rows[i])))
        at, header = best, _header_keys(kind, rows[best])
    missing = [k for k in REQUIRED[kind] if k not in header]
    if missing:
        names = "、".join(f"{columns[k]}({k})" for k in missing)
        raise ImportError_(f"缺少列 / missing columns: {names}（在前 {HEADER_SEARCH_ROWS} 行里没有找到含这些列名的表头 / "
                           f"no header row with them in the first {HEADER_SEARCH_ROWS} rows）")
    out = []
    for number, row in enumerate(rows[at + 1:], start=at + 2):
        if not any(c.strip() for c in row):
            continue
        values = {key: (row[i].strip() if i < len(row) else "") for i, key in enumerate(header) if key}
        out.append((number, values))
    return out


def write_template(kind: str, path: Path) -> None:
    """A file with the Chinese headers only, ready to fill in."""
    headers = list(COLUMNS[kind].values())
    if path.suffix.lower() == ".xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = "家庭" if kind == "families" else "志愿者"
        sheet.append(headers)
        book.save(path)
        return
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerow(headers)


# ------------------------------------------------------------------ parsing values


def parse_day(text: str) -> date | None:
    text = text.strip().replace("年", "-").replace("月", "-").replace("日", "").replace("/", "-").replace(".", "-")
    if re.fullmatch(r"\d{8}", text):
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        parts = [int(p) for p in text.split("-")]
        return date(parts[0], parts[1], parts[2]) if len(parts) == 3 else None
    except ValueError:
        return None


def _date_field(values: dict[str, str], key: str, errors: list[str], today: date) -> date | None:
    text = values.get(key, "")
    if not text:
        return None
    day = parse_day(text)
    if day is None:
        errors.append(f"{FAMILY_COLUMNS[key]} 不是日期 / {key} is not a date: {text!r} (例如 1952-03-14)")
    elif day > today or day.year < 1900:
        errors.append(f"{FAMILY_COLUMNS[key]} 不合理 / {key} out of range: {text}")
        return None
    return day


@dataclass
class MemberRow:
    row: int
    household: str
    township: str
    village: str
    name: str
    relation: str
    sex: str | None
    birth_date: date | None
    calendar: str
    lunar: tuple[int, int, bool] | None
    phone: str | None
    hardship: bool | None
    volunteer_phone: str | None
    child: dict[str, Any] | None
    enrolled_on: date | None = None


def parse_family_row(number: int, v: dict[str, str], today: date) -> MemberRow | list[str]:
    errors: list[str] = []
    for key in REQUIRED["families"]:
        if not v.get(key):
            errors.append(f"{FAMILY_COLUMNS[key]} 不能为空 / {key} is required")
    for key, text in v.items():
        if len(text) > MAX_TEXT:
            errors.append(f"{FAMILY_COLUMNS.get(key, key)} 太长 / {key} is too long")
    relation = RELATIONS.get(v.get("relation", "").lower())
    if v.get("relation") and relation is None:
        errors.append(f"关系只能是 父亲/母亲/孙子女/其他 / unknown relation {v['relation']!r}")
    sex = SEXES.get(v.get("sex", "").lower()) if v.get("sex") else None
    if v.get("sex") and sex is None:
        errors.append(f"性别只能是 男/女 / unknown sex {v['sex']!r}")
    birth = _date_field(v, "birth_date", errors, today)
    lunar = None
    if v.get("lunar_birthday"):
        parsed = parse_lunar_birthday(v["lunar_birthday"])
        if parsed is None:
            errors.append(f"农历生日看不懂 / unreadable lunar birthday {v['lunar_birthday']!r} (例如 04-15、L04-15、闰四月十五)")
        else:
            lunar = (parsed.month, parsed.day, parsed.leap)
    calendar_text = v.get("birthday_calendar", "").lower()
    calendar = CALENDAR_WORDS.get(calendar_text) if calendar_text else (LUNAR if lunar else SOLAR)
    if calendar is None:
        errors.append(f"生日历法只能是 公历/农历 / birthday_calendar must be solar or lunar, not {v['birthday_calendar']!r}")
    phone = phone_or_error(v.get("phone", ""), errors)
    hardship_text = v.get("hardship", "").lower()
    hardship = True if hardship_text in YES else False if hardship_text in NO else None
    if hardship is None:
        errors.append(f"困难家庭只能是 是/否 / hardship must be yes or no, not {v['hardship']!r}")
    if not v.get("hardship"):
        hardship = None  # not given on this row: another row of the household may say
    child = None
    if any(v.get(k) for k in ("child_name", "child_birth_date", "child_death_date", "child_death_cause")):
        child = {"name": v.get("child_name") or None,
                 "birth_date": _date_field(v, "child_birth_date", errors, today),
                 "death_date": _date_field(v, "child_death_date", errors, today),
                 "death_cause": v.get("child_death_cause") or None}
        if child["birth_date"] and child["death_date"] and child["death_date"] < child["birth_date"]:
            errors.append("子女去世日期早于出生日期 / the child's death date is before the birth date")
    enrolled = _enrolment(v, errors, today)
    if errors:
        return errors
    assert relation is not None and calendar is not None
    return MemberRow(number, v["household"], v["township"], v.get("village", ""), v["name"], relation,
                     sex, birth, calendar, lunar, phone, hardship, phone_or_error(v.get("contact_volunteer", ""), []),
                     child, enrolled)


def _enrolment(v: dict[str, str], errors: list[str], today: date) -> date | None:
    """The day the household joined the program; it may be given up to a year ahead."""
    text = v.get("enrolled_on", "")
    if not text:
        return None
    day = parse_day(text)
    if day is None or day.year < 2000 or day > date(today.year + 1, today.month, min(today.day, 28)):
        errors.append(f"纳入日期不对 / enrolled_on is not a usable date: {text!r} (例如 2026-12-01)")
        return None
    return day


# ------------------------------------------------------------------ applying


def _township(session: Session, name: str, county_name: str | None, report: ImportReport,
              cache: dict[str, Township]) -> Township | str:
    if name in cache:
        return cache[name]
    township = session.scalar(select(Township).where(Township.name == name))
    if township is None:
        counties = list(session.scalars(select(County)))
        county = next((c for c in counties if c.name == county_name), None)
        if county is None and county_name:
            county = County(name=county_name)
            session.add(county)
            session.flush()
            report.count("created", "counties")
        elif county is None and len(counties) == 1:
            county = counties[0]
        if county is None:
            return (f"没有乡镇“{name}”：第一次导入请用 --county 或配置文件里的 [county] name 写明县名 / "
                    f"unknown township {name!r}: on a first import name the county with --county or [county] name")
        township = Township(county_id=county.id, name=name)
        session.add(township)
        session.flush()
        report.count("created", "townships")
    cache[name] = township
    return township


def _chunked(session: Session, make: Callable[[list[Any]], Any], values: Iterable[Any]) -> list[Any]:
    """Rows of `make(chunk)` for the values in chunks: one statement may bind only so many
    parameters (SQLite 32,766, PostgreSQL 65,535), and a county file has a hundred thousand."""
    wanted = list(values)
    out: list[Any] = []
    for i in range(0, len(wanted), IN_CHUNK):
        out.extend(session.execute(make(wanted[i:i + IN_CHUNK])).all())
    return out


def import_families(session: Session, rows: list[tuple[int, dict[str, str]]], *, now: datetime,
                    today: date, county: str | None = None, actor_id: int | None = None) -> ImportReport:
    """Check every row, then write them all in the caller's transaction (nothing if any is bad).

    In bulk: what exists is read with a few set-based queries, the file is applied to it in
    memory row by row (the same rules, in file order, as one row at a time would), and the
    result is written with one multi-row statement per table — a county's hundred thousand
    rows in seconds. The caller commits, or rolls back when the report has errors."""
    report = ImportReport(rows=len(rows))
    staff_phones: dict[int, str | None] = {}
    for number, values in rows:
        errors: list[str] = []
        staff_phones[number] = phone_or_error(values.get("contact_volunteer", ""), errors)
        if errors:
            staff_phones[number] = None
    volunteer_ids = {phone: pid for pid, phone in _chunked(session, lambda chunk: select(Person.id, Person.phone).where(
        Person.phone.in_(chunk), Person.role.in_((Role.VOLUNTEER, Role.COORDINATOR, Role.ADMIN))),
        {p for p in staff_phones.values() if p})}
    parsed: list[MemberRow] = []
    for number, values in rows:
        result = parse_family_row(number, values, today)
        staff_phone = staff_phones[number]
        reason = None
        if values.get("contact_volunteer") and staff_phone is None:
            reason = (f"联系志愿者电话不对 / bad volunteer phone {values['contact_volunteer']!r}")
        elif staff_phone and staff_phone not in volunteer_ids:
            reason = f"联系志愿者电话未登记 / no volunteer with phone {staff_phone}; import volunteers first"
        if reason:
            result = [*result, reason] if isinstance(result, list) else [reason]
        if isinstance(result, list):
            report.errors.extend(RowError(number, reason) for reason in result)
        else:
            parsed.append(result)
    # Rows of one household must agree on what belongs to the household.
    first: dict[str, MemberRow] = {}
    seen_members: set[tuple[str, str]] = set()
    for r in parsed:
        head = first.setdefault(r.household, r)
        for attr, label in (("township", "乡镇"), ("village", "村")):
            if getattr(r, attr) and getattr(head, attr) and getattr(r, attr) != getattr(head, attr):
                report.errors.append(RowError(r.row, f"同一户的{label}与第 {head.row} 行不同 / {attr} differs from row {head.row}"))
        if (r.household, r.name) in seen_members:
            report.errors.append(RowError(r.row, f"“{r.name}”在这户里重复 / {r.name!r} appears twice in household {r.household}"))
        seen_members.add((r.household, r.name))
    phones: dict[str, MemberRow] = {}
    for r in parsed:
        if r.phone and r.phone in phones:
            report.errors.append(RowError(r.row, f"电话与第 {phones[r.phone].row} 行重复 / phone repeats row {phones[r.phone].row}"))
        elif r.phone:
            phones[r.phone] = r
    holders = _chunked(session, lambda chunk: select(Person.id, Person.phone, Person.role, Person.name).where(
        Person.phone.in_(chunk)), phones)
    owners = dict(_chunked(session, lambda chunk: select(HouseholdMember.person_id, Household.code).join(
        Household, Household.id == HouseholdMember.household_id).where(HouseholdMember.person_id.in_(chunk))
        .order_by(HouseholdMember.id.desc()), [h[0] for h in holders]))  # the first membership wins
    for pid, phone, role, name in holders:
        r = phones[phone or ""]
        if role != Role.FAMILY or owners.get(pid) not in (None, r.household) or name != r.name:
            report.errors.append(RowError(r.row, f"电话 {r.phone} 已经属于别人 / phone {r.phone} belongs to someone else"))
    if report.errors:
        report.errors.sort(key=lambda e: e.row)
        return report
    townships: dict[str, Township] = {}
    township_of: dict[int, int] = {}  # row -> township id
    for r in parsed:
        township = _township(session, r.township or first[r.household].township, county, report, townships)
        if isinstance(township, str):
            report.errors.append(RowError(r.row, township))
        else:
            township_of[r.row] = township.id
    if report.errors:
        return report
    _FamilyWriter(session, report, now=now, today=today).write(parsed, first, township_of, volunteer_ids)
    record_audit_sync(session, actor_id=actor_id, action="write", entity="import_families", entity_id=None,
                      household_id=None, detail=f"rows={report.rows}", at=now)
    report.applied = True
    return report


class _FamilyWriter:
    """Applies checked family rows to what the database holds, in memory, then writes in bulk.

    Each record is a dict of column values; the values before the file are kept beside them
    so the report tells what the file changed (updated) from what it only repeated (unchanged)."""

    def __init__(self, session: Session, report: ImportReport, *, now: datetime, today: date) -> None:
        self.s, self.report, self.now, self.today = session, report, now, today

    def write(self, parsed: list[MemberRow], first: dict[str, MemberRow], township_of: dict[int, int],
              volunteer_ids: dict[str, int]) -> None:
        codes = list(dict.fromkeys(r.household for r in parsed))
        homes = self._households(codes)
        villages = self._villages(parsed, first, township_of)
        before = {code: _values(h, HOUSEHOLD_FIELDS) for code, h in homes.items()}
        for r in parsed:  # the household's fields: each row may set them, the last one given wins
            home = homes.get(r.household)
            if home is None:
                home = homes[r.household] = {"id": None, "code": r.household, "created_at": self.now,
                                             "enrolled_on": self.today, "village_id": None, "hardship": False}
                self.report.count("created", "households")
            home["township_id"] = township_of[r.row]
            if r.hardship is not None:
                home["hardship"] = r.hardship
            if r.enrolled_on is not None:
                home["enrolled_on"] = r.enrolled_on
            village = r.village or first[r.household].village
            if village:
                home["village_id"] = villages[(township_of[r.row], village)]
        old_ids = [h["id"] for h in homes.values() if h["id"] is not None]
        self._save_households(homes, before)
        self._members(parsed, homes, township_of, old_ids)
        self._children(parsed, homes, old_ids)
        self._assignments(parsed, homes, volunteer_ids, old_ids)

    # -- households and villages

    def _households(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        h = Household
        return {row.code: dict(row._mapping) for row in _chunked(self.s, lambda chunk: select(
            h.id, h.code, h.township_id, h.village_id, h.hardship, h.enrolled_on).where(h.code.in_(chunk)), codes)}

    def _villages(self, parsed: list[MemberRow], first: dict[str, MemberRow],
                  township_of: dict[int, int]) -> dict[tuple[int, str], int]:
        wanted = list(dict.fromkeys((township_of[r.row], r.village or first[r.household].village) for r in parsed
                                    if r.village or first[r.household].village))
        found = {(t, n): i for i, t, n in _chunked(
            self.s, lambda chunk: select(Village.id, Village.township_id, Village.name).where(Village.township_id.in_(chunk)),
            {t for t, _ in wanted})}
        missing = [key for key in wanted if key not in found]
        if missing:
            self.s.execute(insert(Village.__table__), [{"township_id": t, "name": n} for t, n in missing])
            found.update({(t, n): i for i, t, n in _chunked(self.s, lambda chunk: select(
                Village.id, Village.township_id, Village.name).where(Village.township_id.in_(chunk)),
                {t for t, _ in missing})})  # (township, name) is unique
            for _ in missing:
                self.report.count("created", "villages")
        return found

    def _save_households(self, homes: dict[str, dict[str, Any]], before: dict[str, tuple[Any, ...]]) -> None:
        new = [h for h in homes.values() if h["id"] is None]
        if new:
            self.s.execute(insert(Household.__table__), [{k: v for k, v in h.items() if k != "id"} for h in new])
            made = dict(_chunked(self.s, lambda chunk: select(Household.code, Household.id).where(
                Household.code.in_(chunk)), [h["code"] for h in new]))  # 户编号 is unique
            for home in new:
                home["id"] = made[home["code"]]
        changed = []
        for code, state in before.items():
            after = _values(homes[code], HOUSEHOLD_FIELDS)
            self.report.compare("households", state, after)
            if after != state:
                changed.append({"id": homes[code]["id"], **dict(zip(HOUSEHOLD_FIELDS, after, strict=True))})
        if changed:
            self.s.execute(update(Household), changed)

    # -- members (a person, and their place in the household)

    def _members(self, parsed: list[MemberRow], homes: dict[str, dict[str, Any]], township_of: dict[int, int],
                 old_ids: list[int]) -> None:
        m, p = HouseholdMember, Person
        existing: dict[tuple[int, str], dict[str, Any]] = {}
        for row in _chunked(self.s, lambda chunk: select(
                m.id.label("member_id"), m.household_id, m.person_id, p.name, *[getattr(p, f) for f in PERSON_FIELDS],
                *[getattr(m, f) for f in MEMBER_ONLY_FIELDS]).join(p, p.id == m.person_id)
                .where(m.household_id.in_(chunk)).order_by(m.id), old_ids):
            existing.setdefault((row.household_id, row.name), dict(row._mapping))  # the first of that name
        people, members, person_updates, member_updates = [], [], [], []
        for r in parsed:
            hid = homes[r.household]["id"]
            record = existing.get((hid, r.name))
            state = None if record is None else _values(record, MEMBER_FIELDS)
            if record is None:
                record = {"household_id": hid, "name": r.name, "phone": None, "sex": None, "birth_date": None,
                          "lunar_birth_month": None, "lunar_birth_day": None, "lunar_birth_leap": False}
                self.report.count("created", "members")
            record["township_id"] = township_of[r.row]
            if r.phone:
                record["phone"] = r.phone
            record["relation"] = r.relation
            record["sex"] = r.sex or record["sex"]
            record["birth_date"] = r.birth_date or record["birth_date"]
            record["birthday_calendar"] = r.calendar
            if r.lunar:
                record["lunar_birth_month"], record["lunar_birth_day"], record["lunar_birth_leap"] = r.lunar
            if state is None:
                people.append({"name": r.name, "role": Role.FAMILY, "township_id": record["township_id"],
                               "phone": record["phone"], "created_at": self.now})
                members.append(record)
                continue
            after = _values(record, MEMBER_FIELDS)
            self.report.compare("members", state, after)
            if after != state:
                person_updates.append({"id": record["person_id"], **{f: record[f] for f in PERSON_FIELDS}})
                member_updates.append({"id": record["member_id"], **{f: record[f] for f in MEMBER_ONLY_FIELDS}})
        if people:
            made = _reserve_ids(self.s, Person.__table__, len(people))
            self.s.execute(insert(Person.__table__), [{"id": pid, **person} for pid, person in zip(made, people, strict=True)])
            self.s.execute(insert(HouseholdMember.__table__), [
                {"household_id": rec["household_id"], "person_id": pid, **{f: rec[f] for f in MEMBER_ONLY_FIELDS}}
                for rec, pid in zip(members, made, strict=True)])
        if person_updates:
            self.s.execute(update(Person), person_updates)
            self.s.execute(update(HouseholdMember), member_updates)

    # -- children

    def _children(self, parsed: list[MemberRow], homes: dict[str, dict[str, Any]], old_ids: list[int]) -> None:
        c = DeceasedChild
        known: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in _chunked(self.s, lambda chunk: select(c.id, c.household_id, c.name, *[getattr(c, f) for f in CHILD_FIELDS])
                            .where(c.household_id.in_(chunk)).order_by(c.id), old_ids):
            known[row.household_id].append(dict(row._mapping))
        before = {rec["id"]: _values(rec, CHILD_FIELDS) for recs in known.values() for rec in recs}
        new: list[dict[str, Any]] = []
        for r in parsed:
            if not r.child:
                continue
            hid = homes[r.household]["id"]
            children = known[hid]
            match = next((ch for ch in children if ch["name"] == r.child["name"]), None)
            if match is None and r.child["name"] is None and len(children) == 1:
                match = children[0]
            state = None if match is None else _values(match, CHILD_FIELDS)
            if match is None:
                match = {"id": None, "household_id": hid, "name": r.child["name"], "birth_date": None,
                         "death_date": None, "death_cause": None}
                children.append(match)
                new.append(match)
                self.report.count("created", "children")
            for key in CHILD_FIELDS:
                if r.child[key] is not None:
                    match[key] = r.child[key]
            if state is not None:
                self.report.compare("children", state, _values(match, CHILD_FIELDS))
        if new:
            self.s.execute(insert(DeceasedChild.__table__), [{k: v for k, v in ch.items() if k != "id"} for ch in new])
        changed = [{"id": rec["id"], **{f: rec[f] for f in CHILD_FIELDS}} for recs in known.values() for rec in recs
                   if rec["id"] is not None and _values(rec, CHILD_FIELDS) != before[rec["id"]]]
        if changed:
            self.s.execute(update(DeceasedChild), changed)

    # -- contact volunteers (the contact-person system: one named volunteer at a time)

    def _assignments(self, parsed: list[MemberRow], homes: dict[str, dict[str, Any]],
                     volunteer_ids: dict[str, int], old_ids: list[int]) -> None:
        a = ContactAssignment
        current: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in _chunked(self.s, lambda chunk: select(a.id, a.household_id, a.volunteer_id).where(
                a.household_id.in_(chunk), a.ended_on.is_(None)), old_ids):
            current[row.household_id].append({"id": row.id, "volunteer_id": row.volunteer_id, "ended_on": None})
        ended: list[int] = []
        new: list[dict[str, Any]] = []
        for r in parsed:
            if not r.volunteer_phone:
                continue
            hid = homes[r.household]["id"]
            volunteer = volunteer_ids[r.volunteer_phone]
            still = [x for x in current[hid] if x["ended_on"] is None]
            if any(x["volunteer_id"] == volunteer for x in still):
                continue
            for assignment in still:
                assignment["ended_on"] = self.today
                if assignment["id"] is not None:
                    ended.append(assignment["id"])
            assignment = {"id": None, "household_id": hid, "volunteer_id": volunteer, "started_on": self.today,
                          "ended_on": None}
            current[hid].append(assignment)
            new.append(assignment)
            self.report.count("created", "assignments")
        if ended:
            self.s.execute(update(ContactAssignment), [{"id": i, "ended_on": self.today} for i in ended])
        if new:
            self.s.execute(insert(ContactAssignment.__table__), [{k: v for k, v in x.items() if k != "id"} for x in new])


def _reserve_ids(session: Session, table: Any, n: int) -> list[int]:
    """Primary keys for `n` rows this import inserts, so the rows that point at them (members
    at people) can be written in bulk too; a people row has no other key to find it again by.

    PostgreSQL hands them out from the table's own sequence, safe beside other writers.
    SQLite has one writer at a time: once this transaction holds the write lock (the empty
    update below takes it), the ids after the largest one are this import's alone."""
    if session.get_bind().dialect.name == "postgresql":
        return list(session.scalars(sql("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
                                    {"t": table.name, "n": n}))
    session.execute(table.update().where(false()).values(id=table.c.id))
    start = session.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0
    return list(range(start + 1, start + n + 1))


def _values(record: dict[str, Any], fields: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(record.get(f) for f in fields)


def import_volunteers(session: Session, rows: list[tuple[int, dict[str, str]]], *, now: datetime,
                      county: str | None = None, actor_id: int | None = None) -> ImportReport:
    report = ImportReport(rows=len(rows))
    checked: list[tuple[int, dict[str, str], str]] = []
    phones: dict[str, int] = {}
    for number, v in rows:
        errors = [f"{VOLUNTEER_COLUMNS[k]} 不能为空 / {k} is required" for k in REQUIRED["volunteers"] if not v.get(k)]
        role = STAFF_ROLES.get((v.get("role") or "volunteer").lower())
        if role is None:
            errors.append(f"角色只能是 志愿者/协调员/管理员 / unknown role {v.get('role')!r}")
        phone = phone_or_error(v.get("phone", ""), errors) or ""
        v["phone"] = phone
        if phone and phone in phones:
            errors.append(f"电话与第 {phones[phone]} 行重复 / phone repeats row {phones[phone]}")
        phones.setdefault(phone, number)
        if role == Role.COORDINATOR and not v.get("township"):
            errors.append("协调员需要填乡镇 / a coordinator needs a township")
        if any(len(t) > MAX_TEXT for t in v.values()):
            errors.append("有内容太长 / a value is too long")
        report.errors.extend(RowError(number, e) for e in errors)
        if not errors:
            assert role is not None
            checked.append((number, v, role))
    existing = {p.phone: p for (p,) in _chunked(session, lambda chunk: select(Person).where(Person.phone.in_(chunk)), phones)}
    for number, v, _role in checked:
        person = existing.get(v["phone"])
        if person is not None and person.role == Role.FAMILY:
            report.errors.append(RowError(number, f"电话 {v['phone']} 是一位家庭成员的 / phone {v['phone']} belongs to a family member"))
    if report.errors:
        report.errors.sort(key=lambda e: e.row)
        return report
    townships: dict[str, Township] = {}
    for number, v, role in checked:
        township_id = None
        if v.get("township"):
            township = _township(session, v["township"], county, report, townships)
            if isinstance(township, str):
                report.errors.append(RowError(number, township))
                continue
            township_id = township.id
        person = existing.get(v["phone"])
        state = None if person is None else _state(person, fields=STAFF_FIELDS)
        if person is None:
            person = Person(phone=v["phone"], name=v["name"], role=role, created_at=now)
            session.add(person)
            report.count("created", "people")
        person.name, person.role, person.township_id = v["name"], role, township_id
        person.skills = v.get("skills") or person.skills
        person.active = True
        if state is not None:
            report.compare("people", state, _state(person, fields=STAFF_FIELDS))
    if report.errors:
        return report
    session.flush()
    record_audit_sync(session, actor_id=actor_id, action="write", entity="import_volunteers", entity_id=None,
                      household_id=None, detail=f"rows={report.rows}", at=now)
    report.applied = True
    return report


def summary(report: ImportReport) -> Iterable[str]:
    for bucket, label in ((report.created, "新建 / created"), (report.updated, "更新 / updated"),
                          (report.unchanged, "未变 / unchanged")):
        if bucket:
            yield f"{label}: " + ", ".join(f"{k} {n}" for k, n in sorted(bucket.items()))
