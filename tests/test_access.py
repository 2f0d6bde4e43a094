"""Roles and scope, enforced in one place: every dialog against every role, every scope query."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot.app import App
from bot.cli import main
from dialogs.engine.dialog import action_value
from dialogs.engine.types import Inbound
from dialogs.registry import ALL_DIALOGS
from storage.models import ActionToken, ChannelAddress, DialogSession, Household, Person, Role
from storage.scope import visible_households
from tests.chat import Chat

ROLES = ["admin", "coordinator", "volunteer", "family", "newcomer"]
PHONES = {"admin": "10000000900", "coordinator": "10000000101", "volunteer": "10000000001"}


def _address_for(app: App, role: str) -> str:
    if role in PHONES:
        return PHONES[role]
    if role == "newcomer":
        return "nobody-yet"
    with app.db.session() as session:
        parent = session.scalar(select(Person).where(Person.role == Role.FAMILY).order_by(Person.id))
        assert parent is not None
        session.add(ChannelAddress(person_id=parent.id, channel="console", address="family-member"))
    return "family-member"


@pytest.mark.parametrize("role", ROLES)
async def test_every_dialog_against_every_role(county: App, role: str) -> None:
    address = _address_for(county, role)
    county.runner.flood.max_messages = 10**9  # many probes in a row: this test is not about rate
    chat = Chat(county, address)
    await chat.say("菜单")
    for cls in ALL_DIALOGS:
        token = f"probe-{cls.name}"[:32]
        with county.db.session() as session:  # a button for this dialog, as if forged or replayed
            session.add(ActionToken(token=token, channel="console", address=address,
                                    action={"value": action_value(cls.name)}))
        outgoing = await county.runner.handle(Inbound("console", address, option_token=token))
        text = " ".join(o.payload["text"] for o in outgoing)
        with county.db.session() as session:
            row = session.scalar(select(DialogSession).where(DialogSession.address == address))
            current = row.dialog if row else None
        allowed = role in cls.roles
        if allowed:
            assert "不能使用" not in text, f"{role} refused {cls.name}"
        else:
            assert "不能使用" in text, f"{role} reached {cls.name}"
            assert current != cls.name
        await chat.say("取消")


async def test_scope_of_each_role(county: App) -> None:
    with county.db.session() as session:
        people = {p.phone: p for p in session.scalars(select(Person).where(Person.phone.is_not(None)))}
        all_codes = set(session.scalars(select(Household.code)))

        def codes(person: Person) -> set[str]:
            return {h.code for h in session.scalars(visible_households(person))}

        assert codes(people["10000000900"]) == all_codes  # admin: the county
        assert codes(people["10000000101"]) == {"QX001", "QX002", "QX003", "QX004"}  # 清溪镇
        assert codes(people["10000000001"]) == {"QX001", "QX002", "QX003"}  # own households
        assert codes(people["10000000003"]) == {"BY001", "BY002"}
        parent = session.scalar(select(Person).where(Person.name == "陈秀珍"))
        assert parent is not None and codes(parent) == {"QX002"}


async def test_audit_command_lists_writes_and_reads(volunteer: Chat, county: App, capsys: pytest.CaptureFixture[str]) -> None:
    await volunteer.script("健康数据", "2", "135/85", "无", "保存")
    assert main(["--db", county.settings.database_url, "audit", "--household", "QX002", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["entity"] == "reading" and r["action"] == "write" and r["actor"] == "林晓燕" for r in rows)
    assert main(["--db", county.settings.database_url, "audit", "--person", "10000000003", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


async def test_logs_carry_no_names_phones_or_text(volunteer: Chat, caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogs.visit_report import VisitReport

    async def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("王德福 10000000001 老人说想念儿子")

    monkeypatch.setattr(VisitReport, "save", broken)
    with caplog.at_level("INFO"):
        await volunteer.script("走访记录", "1", "今天", "1", "1", "1", "1", "老人说想念儿子", "无", "2")
        assert "没有保存成功" in await volunteer.say("1")
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "RuntimeError" in logged  # the failure is logged…
    for secret in ("王德福", "林晓燕", "10000000001", "想念儿子"):
        assert secret not in logged  # …without who or what


async def test_a_keyword_of_a_dialog_the_role_may_not_use_is_refused_kindly(volunteer: Chat) -> None:
    reply = await volunteer.say("/report")
    assert "不能使用" in reply and "1. 走访记录" in reply
