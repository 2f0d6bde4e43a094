"""What volunteers record: visits, health readings, assessments, services and follow-ups."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow
from storage.crypto import EncryptedText


class VisitKind(enum.StrEnum):
    HOME = "home"
    PHONE = "phone"
    WECHAT = "wechat"
    CARD = "card"
    ACTIVITY = "activity"
    MESSAGE = "message"  # a greeting delivered by Warmline itself


class VisitOutcome(enum.StrEnum):
    DONE = "done"
    DECLINED = "declined"
    NOT_REACHED = "not_reached"


class Visit(Base):
    """One contact with a household: the record every rhythm rule and report counts from."""

    __tablename__ = "visits"
    __table_args__ = (Index("ix_visits_household_date", "household_id", "visited_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("household_members.id"))
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    visited_on: Mapped[date]
    kind: Mapped[str] = mapped_column(String(16))
    occasion: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16), default=VisitOutcome.DONE)
    physical_state: Mapped[str | None] = mapped_column(EncryptedText)
    mood: Mapped[str | None] = mapped_column(String(32))
    needs: Mapped[str | None] = mapped_column(EncryptedText)
    money_fen: Mapped[int] = mapped_column(Integer, default=0)
    gifts: Mapped[str | None] = mapped_column(Text)
    follow_up: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16), default="dialog")
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class HealthReading(Base):
    __tablename__ = "health_readings"
    __table_args__ = (Index("ix_readings_household_time", "household_id", "measured_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("household_members.id"))
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    measured_at: Mapped[datetime]
    systolic: Mapped[int | None]
    diastolic: Mapped[int | None]
    pulse: Mapped[int | None]
    glucose_mmol: Mapped[float | None] = mapped_column(Float)
    glucose_context: Mapped[str | None] = mapped_column(String(16))  # fasting|after_meal|random
    advice: Mapped[str | None] = mapped_column(EncryptedText)
    danger: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    danger_reasons: Mapped[str | None] = mapped_column(String(200))
    followed_up_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Assessment(Base):
    """One assessment; a new one is added each time so change over time stays visible."""

    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("household_members.id"))
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    assessed_on: Mapped[date]
    grief_trauma: Mapped[int]
    healing: Mapped[int]
    acceptance: Mapped[int]
    future_attitude: Mapped[int]
    current_problems: Mapped[str | None] = mapped_column(EncryptedText)
    problems_to_solve: Mapped[str | None] = mapped_column(EncryptedText)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServiceStatus(enum.StrEnum):
    NOT_NEEDED = "not_needed"
    TO_APPLY = "to_apply"
    APPLIED = "applied"
    ACTIVE = "active"
    EXPIRED = "expired"


class ServiceEntitlement(Base):
    """One service or insurance for one member, with its current status and dates."""

    __tablename__ = "service_entitlements"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("household_members.id"))
    service: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    applied_on: Mapped[date | None]
    starts_on: Mapped[date | None]
    expires_on: Mapped[date | None]
    note: Mapped[str | None] = mapped_column(EncryptedText)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowUp(Base):
    """A need, request or complaint that someone must act on; nothing a family says is lost."""

    __tablename__ = "follow_ups"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # visit | reading | family | service
    source_id: Mapped[int | None]
    text: Mapped[str | None] = mapped_column(EncryptedText)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acted_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]


class Task(Base):
    """A task someone must do that the planner cannot derive from the rhythm alone."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("household_members.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    # what made the task, e.g. "service_expiry:<entitlement>:<date>", so a job never makes it twice
    key: Mapped[str | None] = mapped_column(String(96), unique=True)
    due_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
