"""Every table of Warmline, importable from one place (Alembic reads the metadata from here)."""

from storage.base import Base
from storage.models.activities import Activity, Invitation
from storage.models.care import (
    Assessment,
    FollowUp,
    HealthReading,
    ServiceEntitlement,
    ServiceStatus,
    Task,
    Visit,
    VisitKind,
    VisitOutcome,
)
from storage.models.households import (
    CaseFile,
    ContactAssignment,
    DeceasedChild,
    Household,
    HouseholdMember,
    IntakeDraft,
    VisitPreference,
)
from storage.models.outreach import Consent, FamilyMessage, Greeting, Preference
from storage.models.people import ChannelAddress, InviteCode, InviteFailure, Person, Role
from storage.models.places import County, Township, Village
from storage.models.runtime import (
    ActionToken,
    AuditEntry,
    DeliveryWorkerLease,
    DialogSession,
    Lease,
    OutboxLane,
    OutboxMessage,
    OutboxStatus,
    ProcessedInbound,
)

__all__ = [
    "ActionToken",
    "Activity",
    "Assessment",
    "AuditEntry",
    "Base",
    "CaseFile",
    "ChannelAddress",
    "Consent",
    "ContactAssignment",
    "County",
    "DeceasedChild",
    "DeliveryWorkerLease",
    "DialogSession",
    "FamilyMessage",
    "FollowUp",
    "Greeting",
    "HealthReading",
    "Household",
    "HouseholdMember",
    "IntakeDraft",
    "Invitation",
    "InviteCode",
    "InviteFailure",
    "Lease",
    "OutboxLane",
    "OutboxMessage",
    "OutboxStatus",
    "Person",
    "Preference",
    "ProcessedInbound",
    "Role",
    "ServiceEntitlement",
    "ServiceStatus",
    "Task",
    "Township",
    "Village",
    "Visit",
    "VisitKind",
    "VisitOutcome",
    "VisitPreference",
]
