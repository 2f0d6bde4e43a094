"""The household lists a chat question shows: the scope rule's households, by code, labelled.

`household_choices` and `household_choice` answer a dialog's "which family?" in one statement
each; they must list exactly what `visible_households` lets a person see (no more, none
missing), in the same order, with the same label as `household_labels` gives everywhere else.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from bot.app import App
from storage.models import Household, Person, Role
from storage.queries import household_choice, household_choices, household_count, household_labels
from storage.scope import visible_households
from tests.chat import Chat


def _people(county: App) -> list[Person]:
    with county.db.session() as session:
        people = list(session.scalars(select(Person).where(Person.role.in_(list(Role)))))
        session.expunge_all()
    return people


async def test_choices_are_the_scope_in_code_order_with_the_usual_labels(county: App) -> None:
    with county.db.session() as session:  # an erased household drops out of every list
        erased = session.scalars(select(Household).order_by(Household.code)).first()
        assert erased is not None
        erased.erased_at = datetime(2026, 1, 1, tzinfo=UTC)
        erased_id = erased.id
    people = _people(county)
    assert {p.role for p in people} == set(Role)
    async with county.db.async_session() as session:
        all_ids = list(await session.scalars(select(Household.id)))
        for person in people:
            visible = list(await session.scalars(visible_households(person).order_by(Household.code)))
            expected = await household_labels(session, visible)
            choices = await household_choices(session, person, limit=1000)
            assert [(c.id, c.label) for c in choices] == [(h.id, expected[h.id]) for h in visible]
            assert await household_choices(session, person, limit=2) == choices[:2]
            assert await household_count(session, person) == len(visible)
            for hid in all_ids:
                one = await household_choice(session, person, hid)
                assert one == (next(c for c in choices if c.id == hid) if hid in expected else None)
            assert await household_choice(session, person, erased_id) is None


async def test_a_coordinator_without_a_township_sees_no_household(county: App) -> None:
    async with county.db.async_session() as session:
        nowhere = Person(id=10**6, name="无乡镇协调员", role=Role.COORDINATOR, township_id=None)
        assert await household_choices(session, nowhere, limit=40) == []
        assert await household_count(session, nowhere) == 0
        any_id = await session.scalar(select(Household.id))
        assert any_id is not None and await household_choice(session, nowhere, any_id) is None
        assert list(await session.scalars(visible_households(nowhere))) == []


async def test_my_families_counts_and_lists_the_volunteers_own_households(volunteer: Chat) -> None:
    text = await volunteer.say("我的家庭")
    assert "你联系的家庭共 3 户" in text
    assert "QX001" in text and "QX003" in text and "BY001" not in text
