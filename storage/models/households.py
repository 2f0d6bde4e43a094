"""Households, their members, the children they lost, and who looks after them."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.base import Base, utcnow
from storage.crypto import EncryptedJSON, EncryptedText
from storage.models.people import Person


class VisitPreference(enum.StrEnum):
    ACCEPTS = "accepts"
    PACED = "paced"  # accepts, at the family's own slower pace
    REFUSED = "refused"


class Household(Base):
    __tablename__ = "households"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # 户编号
    township_id: Mapped[int] = mapped_column(ForeignKey("townships.id"), index=True)
    village_id: Mapped[int | None] = mapped_column(ForeignKey("villages.id"))
    hardship: Mapped[bool] = mapped_column(Boolean, default=False)
    visit_preference: Mapped[str] = mapped_column(String(16), default=VisitPreference.ACCEPTS)
    visit_pace_days: Mapped[int | None] = mapped_column(Integer)
    refused_at: Mapped[datetime | None]
    # The day the household joined the program: it owes nothing before it (reports, planner).
    # None for a household created without one (the demo county): the planner counts from the
    # day its record was created, reports from the start of any period.
    enrolled_on: Mapped[date | None]
    erased_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[HouseholdMember]] = relationship(back_populates="household")
    children: Mapped[list[DeceasedChild]] = relationship(back_populates="household")
    assignments: Mapped[list[ContactAssignment]] = relationship(back_populates="household")


class HouseholdMember(Base):
    """A person's place in a household, with what the care rhythm needs to know about them."""

    __tablename__ = "household_members"
    __table_args__ = (UniqueConstraint("household_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    relation: Mapped[str] = mapped_column(String(16))  # father, mother, grandchild, other
    sex: Mapped[str | None] = mapped_column(String(8))
    birth_date: Mapped[date | None]
    birthday_calendar: Mapped[str] = mapped_column(String(8), default="solar")  # solar | lunar
    lunar_birth_month: Mapped[int | None]
    lunar_birth_day: Mapped[int | None]
    lunar_birth_leap: Mapped[bool] = mapped_column(Boolean, default=False)
    form_of_address: Mapped[str | None] = mapped_column(String(32))
    alive: Mapped[bool] = mapped_column(Boolean, default=True)

    household: Mapped[Household] = relationship(back_populates="members")
    person: Mapped[Person] = relationship()


class DeceasedChild(Base):
    __tablename__ = "deceased_children"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    name: Mapped[str | None] = mapped_column(EncryptedText)
    sex: Mapped[str | None] = mapped_column(String(8))
    birth_date: Mapped[date | None]
    death_date: Mapped[date | None]
    death_cause: Mapped[str | None] = mapped_column(EncryptedText)

    household: Mapped[Household] = relationship(back_populates="children")


class ContactAssignment(Base):
    """The contact-person system (联系人制度): one named volunteer per household at a time."""

    __tablename__ = "contact_assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    started_on: Mapped[date]
    ended_on: Mapped[date | None]

    household: Mapped[Household] = relationship(back_populates="assignments")
    volunteer: Mapped[Person] = relationship()


class CaseFile(Base):
    """一户一档: what the intake visit recorded about the household as a whole."""

    __tablename__ = "case_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), unique=True)
    economic_security: Mapped[str | None] = mapped_column(EncryptedText)
    biggest_difficulty: Mapped[str | None] = mapped_column(EncryptedText)
    needs: Mapped[str | None] = mapped_column(EncryptedText)
    elder_care_expectation: Mapped[str | None] = mapped_column(EncryptedText)
    accepts_visits: Mapped[str | None] = mapped_column(String(16))
    visit_pace: Mapped[str | None] = mapped_column(String(64))
    member_notes: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON, default=dict)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    confirmed_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IntakeDraft(Base):
    """An intake paused by the volunteer: answers kept until resumed, never part of the file."""

    __tablename__ = "intake_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), unique=True)
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    state: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
