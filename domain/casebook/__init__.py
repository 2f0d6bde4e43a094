"""The casebook: what one step of a dialog may read and write, for one person, in one unit of work.

The runner opens a transaction per inbound message and hands the dialog a `Casebook` bound to it
and to the sender (through `StepContext.book`). A dialog asks it for what it needs — the
households in the sender's scope, their members, record a visit or a reading, open a
follow-up, queue a message — and never holds the ORM session itself. Every read of a household
goes through the scope rule (`storage.scope`), so a forged or stale household id answers None,
never another township's family. What is written is only flushed here: the runner commits the
whole step or nothing.
"""

from __future__ import annotations

from domain.casebook.activities import ActivityDesk
from domain.casebook.care import (
    AssessmentRecord,
    CareRecords,
    ReadingSaved,
    VisitRecord,
    VisitSaved,
)
from domain.casebook.families import FamilyDesk
from domain.casebook.joining import JoiningDesk
from storage.queries import HouseholdChoice, MemberName

__all__ = ["AssessmentRecord", "Casebook", "HouseholdChoice", "MemberName", "ReadingSaved",
           "VisitRecord", "VisitSaved"]


class Casebook(CareRecords, ActivityDesk, FamilyDesk, JoiningDesk):
    """The narrow API dialogs use; one per step, bound to the step's session and sender."""
