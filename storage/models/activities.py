"""Themed activities and the invitations and RSVPs that organise them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow


class Activity(Base):
    """A themed activity and its broadcast.

    status: draft | scheduled (invitations go out at `send_at`) | sent | cancelled. `revision`
    counts reschedules, so reminders and notices keyed by it go out again for the new time.
    """

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(primary_key=True)
    township_id: Mapped[int | None] = mapped_column(ForeignKey("townships.id"), index=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    type: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime]
    place: Mapped[str | None] = mapped_column(String(200))
    capacity: Mapped[int | None] = mapped_column(Integer)
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    send_at: Mapped[datetime | None]
    cost_fen: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    revision: Mapped[int] = mapped_column(Integer, default=0)
    attendance_marked_at: Mapped[datetime | None]


class Invitation(Base):
    """One person invited to one activity, their answer, their place (or the waitlist), attendance."""

    __tablename__ = "invitations"
    __table_args__ = (UniqueConstraint("activity_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"))
    channel: Mapped[str] = mapped_column(String(16))
    rsvp: Mapped[str | None] = mapped_column(String(8))  # yes | no | maybe
    rsvp_at: Mapped[datetime | None]
    waitlisted: Mapped[bool] = mapped_column(Boolean, default=False)
    promoted_at: Mapped[datetime | None]
    attended: Mapped[bool | None] = mapped_column(Boolean)
    # the household contact recorded for this attendance (families only), so a correction removes it
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
