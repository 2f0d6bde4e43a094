"""The package arrows hold: bot → dialogs → domain → storage, and dialogs never hold the session.

Read from the source with `ast`, so a new import that breaks a layer fails here before it
tangles the code: storage imports neither domain, dialogs nor bot; domain imports no dialogs
or bot; dialogs import no bot. A dialog module reaches case records only through the casebook
(`ctx.book`): no SQLAlchemy, no `ctx.session`, no storage query module of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"storage": ("domain", "dialogs", "bot"), "domain": ("dialogs", "bot"),
             "dialogs": ("bot",)}
# Dialogs not yet moved onto the casebook (issue 15): none; the list may only shrink.
NOT_YET_ON_THE_CASEBOOK: set[str] = set()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package) for name in _imports(path)
        if name.split(".")[0] in FORBIDDEN[package]
    }
    assert not wrong, sorted(wrong)


def test_dialogs_reach_case_records_only_through_the_casebook() -> None:
    offenders = []
    for path in sorted((ROOT / "dialogs").glob("*.py")):
        if path.stem in NOT_YET_ON_THE_CASEBOOK:
            continue
        source = path.read_text(encoding="utf-8")
        names = _imports(path)
        if ("ctx.session" in source or any(n.split(".")[0] == "sqlalchemy" for n in names)
                or names & {"storage.queries", "storage.scope", "storage.audit"}):
            offenders.append(path.name)
    assert not offenders, offenders


def test_the_waiting_list_names_only_dialogs_that_still_wait() -> None:
    """A dialog moved onto the casebook leaves the list, so the list cannot hide a regression."""
    still = {path.stem for path in (ROOT / "dialogs").glob("*.py")
             if "ctx.session" in path.read_text(encoding="utf-8")}
    assert still == NOT_YET_ON_THE_CASEBOOK


def test_every_dialog_keeps_its_answers_in_a_typed_form() -> None:
    """No untyped `data` bag: each dialog's form is a dataclass (the base `Form` for a dialog that
    keeps no answers), and one that asks 'which family?' or ends in a confirm step has the
    fields those steps keep."""
    import dataclasses

    from dialogs.common import ChoosesHousehold, HouseholdForm
    from dialogs.engine.form import Form
    from dialogs.engine.recording import RecordForm, Records
    from dialogs.registry import ALL_DIALOGS

    for cls in ALL_DIALOGS:
        form = cls.form_type
        assert dataclasses.is_dataclass(form) and issubclass(form, Form), cls.name
        if issubclass(cls, ChoosesHousehold):
            assert issubclass(form, HouseholdForm), cls.name
        if issubclass(cls, Records):
            assert issubclass(form, RecordForm), cls.name
