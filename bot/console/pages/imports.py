"""导入 — upload the county's family or volunteer list, see every bad row, then import it whole.

Reading and checking are `bot.imports` (the same as `warmline import`): a file with any bad row
imports nothing. The preview runs the import in a transaction that is rolled back, so it finds
everything the real import would; the confirmation sends the same file again (kept in the page,
not on the server, so any worker can take it) and imports it only if it is still clean.

A coordinator's file may name only their own township, and may not change a household or a
person outside it (the scope rule of `storage.scope`, applied to the rows); an admin's file may
name any township. Those refusals are shown as row errors like any other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.responses import Response

from bot.console.web import SECURITY_HEADERS, Page
from bot.imports import (
    COLUMNS,
    ImportError_,
    ImportReport,
    RowError,
    import_families,
    import_volunteers,
    read_rows,
    records,
    summary,
    write_template,
)
from storage.models import Household, Person, Role, Township

KINDS = ("families", "volunteers")
SUFFIXES = (".csv", ".xlsx")


@dataclass
class Checked:
    """What a preview shows: the file's rows, which are bad and why, and the import's report."""

    header: list[str] = field(default_factory=list)
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    errors: dict[int, list[str]] = field(default_factory=dict)
    problem: str | None = None  # the file cannot be read at all
    report: ImportReport | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.errors and bool(self.rows)

    def bad_cells(self, number: int) -> set[int]:
        """Columns named in a row's errors (by their header), to highlight the very cells."""
        reasons = " ".join(self.errors.get(number, []))
        return {i for i, h in enumerate(self.header) if h and h in reasons}


def scope_errors(session: Session, kind: str, rows: list[tuple[int, dict[str, str]]],
                 person: Person) -> list[RowError]:
    """Rows a coordinator may not import: another township, or a household or person outside it."""
    if person.role == Role.ADMIN:
        return []
    own = session.scalar(select(Township.name).where(Township.id == person.township_id)) if person.township_id else None
    errors: list[RowError] = []
    if kind == "families":
        codes = {v.get("household", "") for _n, v in rows}
        elsewhere = set(session.scalars(select(Household.code).where(
            Household.code.in_(codes), Household.township_id != person.township_id)))
        for number, v in rows:
            if v.get("township") and v["township"] != own:
                errors.append(RowError(number, f"乡镇只能是{own} / only your township {own!r}"))
            elif v.get("household") in elsewhere:
                errors.append(RowError(number, "户编号属于别的乡镇 / 户编号 belongs to another township"))
        return errors
    phones = {v.get("phone", "") for _n, v in rows}
    others = {p.phone for p in session.scalars(select(Person).where(Person.phone.in_(phones)))
              if p.role != Role.VOLUNTEER or p.township_id != person.township_id}
    for number, v in rows:
        if (v.get("role") or "volunteer").lower() not in {"volunteer", "志愿者"}:
            errors.append(RowError(number, "角色只能是志愿者 / coordinators import volunteers only"))
        elif v.get("township") != own:
            errors.append(RowError(number, f"乡镇只能是{own} / only your township {own!r}"))
        elif v.get("phone") in others:
            errors.append(RowError(number, "电话属于别的乡镇或别的角色 / 电话 belongs to someone outside your township"))
    return errors


def check_file(page: Page, kind: str, filename: str, content: bytes, *, commit: bool) -> Checked:
    """Read, check and (with `commit`, only when clean) import — in a worker thread's own session."""
    app, person = page.console.app, page.person
    out = Checked()
    suffix = Path(filename).suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(content)
        try:
            raw = read_rows(path)
            found = records(kind, raw)
        except ImportError_ as exc:
            out.problem = str(exc)
            return out
    out.header = raw[0] if raw else []
    numbers = {n for n, _v in found}
    out.rows = [(n, row) for n, row in enumerate(raw[1:], start=2) if n in numbers]
    with Session(app.db.sync_engine, expire_on_commit=False) as session:
        refused = scope_errors(session, kind, found, person)
        if refused:
            report = ImportReport(rows=len(found), errors=refused)
        elif kind == "families":
            report = import_families(session, found, now=page.now(), today=app.services.today(),
                                     actor_id=person.id)
        else:
            report = import_volunteers(session, found, now=page.now(), actor_id=person.id)
        if commit and not report.errors:
            session.commit()
        else:
            session.rollback()
            report.applied = False
    out.report = report
    for error in report.errors:
        out.errors.setdefault(error.row, []).append(error.reason)
    return out


async def _upload(page: Page) -> tuple[str, str, bytes] | str:
    """(kind, filename, bytes) from the form, or the catalogue key of what is wrong."""
    kind = page.field("kind")
    if kind not in KINDS:
        return "bad_kind"
    limit = page.console.config.max_upload_bytes
    upload = page.form.get("file") if page.form is not None else None
    if isinstance(upload, UploadFile) and upload.filename:
        content = await upload.read(limit + 1)
        filename = upload.filename
    elif page.field("content"):
        try:
            content = base64.b64decode(page.field("content"), validate=True)
        except (binascii.Error, ValueError):
            return "no_file"
        filename = page.field("filename")
    else:
        return "no_file"
    if len(content) > limit:
        return "too_big"
    if Path(filename).suffix.lower() not in SUFFIXES:
        return "bad_suffix"
    return kind, Path(filename).name[:100], content


async def imports_page(page: Page) -> Response:
    return page.render("imports.html", active="imports", kinds=KINDS, kind="families")


async def preview_page(page: Page) -> Response:
    return await _check(page, commit=False)


async def confirm_page(page: Page) -> Response:
    return await _check(page, commit=True)


async def _check(page: Page, *, commit: bool) -> Response:
    upload = await _upload(page)
    if isinstance(upload, str):
        return page.render("imports.html", status_code=400, active="imports", kinds=KINDS,
                           kind=page.field("kind") or "families", error=upload)
    kind, filename, content = upload
    checked = await asyncio.to_thread(check_file, page, kind, filename, content, commit=commit)
    imported = commit and checked.ok
    values: dict[str, Any] = {
        "active": "imports", "kinds": KINDS, "kind": kind, "filename": filename, "checked": checked,
        "imported": imported, "summary": list(summary(checked.report)) if imported and checked.report else [],
        "content": base64.b64encode(content).decode() if checked.ok and not imported else "",
    }
    return page.render("import_preview.html", status_code=200 if checked.ok else 422, **values)


async def template_page(page: Page) -> Response:
    kind, fmt = page.request.path_params["kind"], page.request.path_params["fmt"]
    if kind not in COLUMNS or fmt not in {"csv", "xlsx"}:
        return page.render("message.html", status_code=404, title="not_found", text="not_found_text")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{kind}-template.{fmt}"
        write_template(kind, path)
        body = path.read_bytes()
    media = "text/csv; charset=utf-8" if fmt == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, media_type=media, headers={
        **SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{kind}-template.{fmt}"'})
