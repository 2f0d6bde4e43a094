"""Every dialog Warmline offers, in menu order. Add a dialog here to make it reachable."""

from __future__ import annotations

from dialogs.activity_create import ActivityCreate
from dialogs.activity_manage import ActivityManage
from dialogs.assessment import AssessmentDialog
from dialogs.console_sign_in import ConsoleSignIn
from dialogs.engine.dialog import Dialog
from dialogs.family_consent import FamilyConsent, FamilyWelcome, ProxyConsent
from dialogs.family_line import FamilyLine, FamilyReply
from dialogs.family_preferences import FamilyPreferences, FamilyStop
from dialogs.follow_ups import FollowUps
from dialogs.health_reading import HealthReadingDialog
from dialogs.intake import Intake
from dialogs.my_families import MyFamilies
from dialogs.registration import Registration
from dialogs.report import ReportDialog
from dialogs.rsvp import Rsvp
from dialogs.services_status import ServicesStatus
from dialogs.visit_report import VisitReport

ALL_DIALOGS: list[type[Dialog]] = [VisitReport, HealthReadingDialog, MyFamilies, Intake, FollowUps,
                                   AssessmentDialog, ServicesStatus, Registration,
                                   ActivityCreate, ActivityManage, Rsvp, ReportDialog,
                                   FamilyReply, ProxyConsent, FamilyLine, FamilyPreferences,
                                   FamilyStop, FamilyConsent, FamilyWelcome, ConsoleSignIn]
