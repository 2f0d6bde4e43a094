"""Every dialog Warmline offers, in menu order. Add a dialog here to make it reachable."""

from __future__ import annotations

from dialogs.engine.dialog import Dialog
from dialogs.health_reading import HealthReadingDialog
from dialogs.my_families import MyFamilies
from dialogs.registration import Registration
from dialogs.visit_report import VisitReport

ALL_DIALOGS: list[type[Dialog]] = [VisitReport, HealthReadingDialog, MyFamilies, Registration]
