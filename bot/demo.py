"""The demo county: fictional townships, volunteers and families, for trying Warmline locally.

Every name and number here is invented. Phone numbers start with 100, which no Chinese mobile
number does, so they can never reach a real person.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    Visit,
)

DEMO_VOLUNTEER_PHONE = "10000000001"
DEMO_COORDINATOR_PHONE = "10000000101"
DEMO_ADMIN_PHONE = "10000000900"

TOWNSHIPS = {"清溪镇": ["桃园村", "石桥村"], "白云乡": ["松林村", "河湾村"], "长乐镇": ["新塘村"]}
STAFF = [
    ("林晓燕", DEMO_VOLUNTEER_PHONE, Role.VOLUNTEER, "清溪镇"),
    ("周建国", "10000000002", Role.VOLUNTEER, "清溪镇"),
    ("马春兰", "10000000003", Role.VOLUNTEER, "白云乡"),
    ("黄志明", "10000000004", Role.VOLUNTEER, "长乐镇"),
    ("郑丽华", DEMO_COORDINATOR_PHONE, Role.COORDINATOR, "清溪镇"),
    ("邓永强", "10000000102", Role.COORDINATOR, "白云乡"),
    ("胡慧敏", DEMO_ADMIN_PHONE, Role.ADMIN, None),
]
# code, township, village, hardship, volunteer phone, [(name, relation, sex, birth)], child
FAMILIES = [
    ("QX001", "清溪镇", "桃园村", True, DEMO_VOLUNTEER_PHONE,
     [("王德福", "father", "男", date(1952, 3, 14)), ("李桂芳", "mother", "女", date(1954, 8, 2))],
     ("王小军", date(1980, 5, 1), date(2009, 7, 19), "交通事故")),
    ("QX002", "清溪镇", "桃园村", False, DEMO_VOLUNTEER_PHONE,
     [("陈秀珍", "mother", "女", date(1950, 11, 30))],
     ("陈晓红", date(1976, 2, 9), date(2015, 3, 2), "疾病")),
    ("QX003", "清溪镇", "石桥村", False, DEMO_VOLUNTEER_PHONE,
     [("赵国庆", "father", "男", date(1949, 10, 1)), ("孙玉梅", "mother", "女", date(1951, 1, 20))],
     ("赵磊", date(1978, 6, 15), date(2012, 9, 8), "意外")),
    ("QX004", "清溪镇", "石桥村", True, "10000000002",
     [("刘长顺", "father", "男", date(1947, 4, 5))],
     ("刘静", date(1975, 12, 24), date(2008, 5, 12), "地震")),
    ("BY001", "白云乡", "松林村", True, "10000000003",
     [("吴金山", "father", "男", date(1953, 7, 7)), ("何翠英", "mother", "女", date(1955, 9, 9))],
     ("吴勇", date(1982, 1, 3), date(2016, 11, 11), "疾病")),
    ("BY002", "白云乡", "河湾村", False, "10000000003",
     [("杨淑华", "mother", "女", date(1956, 3, 8))],
     ("杨帆", date(1984, 8, 8), date(2019, 4, 4), "疾病")),
    ("CL001", "长乐镇", "新塘村", False, "10000000004",
     [("许福生", "father", "男", date(1948, 12, 12)), ("钱月娥", "mother", "女", date(1950, 6, 6))],
     ("许伟", date(1979, 3, 3), date(2011, 10, 10), "溺水")),
]


def seed_demo(session: Session, now: datetime) -> bool:
    """Create the demo county once; returns False when it was already there."""
    if session.scalar(select(County).where(County.name == "青山县（演示）")) is not None:
        return False
    county = County(name="青山县（演示）")
    session.add(county)
    session.flush()
    townships: dict[str, Township] = {}
    villages: dict[str, Village] = {}
    for name, village_names in TOWNSHIPS.items():
        township = Township(county_id=county.id, name=name)
        session.add(township)
        session.flush()
        townships[name] = township
        for village_name in village_names:
            village = Village(township_id=township.id, name=village_name)
            session.add(village)
            villages[village_name] = village
    session.flush()
    staff: dict[str, Person] = {}
    for name, phone, role, township_name in STAFF:
        person = Person(name=name, phone=phone, role=role, created_at=now,
                        township_id=townships[township_name].id if township_name else None)
        session.add(person)
        staff[phone] = person
    session.flush()
    today = now.date()
    for i, (code, tname, vname, hardship, vphone, parents, child) in enumerate(FAMILIES):
        household = Household(code=code, township_id=townships[tname].id, village_id=villages[vname].id,
                              hardship=hardship, created_at=now)
        session.add(household)
        session.flush()
        for name, relation, sex, born in parents:
            person = Person(name=name, role=Role.FAMILY, township_id=townships[tname].id, created_at=now)
            session.add(person)
            session.flush()
            session.add(HouseholdMember(household_id=household.id, person_id=person.id, relation=relation,
                                        sex=sex, birth_date=born, form_of_address=name[0] + ("大爷" if sex == "男" else "阿姨")))
        child_name, born, died, cause = child
        session.add(DeceasedChild(household_id=household.id, name=child_name, birth_date=born,
                                  death_date=died, death_cause=cause))
        session.add(ContactAssignment(household_id=household.id, volunteer_id=staff[vphone].id,
                                      started_on=today - timedelta(days=400)))
        if i % 2 == 0:
            session.add(Visit(household_id=household.id, volunteer_id=staff[vphone].id,
                              visited_on=today - timedelta(days=3 + i), kind="phone",
                              mood="平稳", physical_state="良好", recorded_at=now, source="demo"))
    return True
