"""Families' consent and preferences, greetings sent, and what families wrote back."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow
from storage.crypto import EncryptedText


class Consent(Base):
    """A family member's agreement to receive messages; withdrawn, never deleted."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"))
    channel: Mapped[str] = mapped_column(String(16))
    wording_version: Mapped[str] = mapped_column(String(16))
    given_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))  # proxy consent
    confirmed_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]


class Preference(Base):
    """What a family member wants to receive; Mother's and Father's Day are asked separately."""

    __tablename__ = "preferences"

    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), primary_key=True)
    festivals: Mapped[bool] = mapped_column(Boolean, default=True)
    own_birthday: Mapped[bool] = mapped_column(Boolean, default=False)
    mothers_day: Mapped[bool] = mapped_column(Boolean, default=False)
    fathers_day: Mapped[bool] = mapped_column(Boolean, default=False)
    activities: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[str | None] = mapped_column(String(16))
    stopped_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Greeting(Base):
    """A greeting planned for a member on an occasion; the unique key makes it happen once."""

    __tablename__ = "greetings"
    __table_args__ = (UniqueConstraint("member_person_id", "occasion", "year"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    member_person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    occasion: Mapped[str] = mapped_column(String(32))
    year: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    status: Mapped[str] = mapped_column(String(16), default="planned")  # planned|sent|expired|failed
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the local day it was for, and the contact it became once delivered (planner, reports)
    occasion_on: Mapped[date | None]
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))


class FamilyMessage(Base):
    """Words a family member sent; forwarded to their contact volunteer and tracked to an answer."""

    __tablename__ = "family_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    channel: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(EncryptedText)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    forwarded_to_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    answered_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    # who answered and how: reply (in Warmline) | call | visit (a contact recorded afterwards)
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    answer_kind: Mapped[str | None] = mapped_column(String(16))
    wants_call: Mapped[bool] = mapped_column(Boolean, default=False)
