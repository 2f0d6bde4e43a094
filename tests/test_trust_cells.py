"""Spreadsheet formula injection: text a family or a coordinator typed never becomes a live
formula in `warmline export family --format xlsx` or in the XLSX/CSV reports."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from bot.app import App
from bot.cli import main
from storage.models import Activity, FamilyMessage
from tests.conftest import TEST_DATA_KEY
from tests.report_seed import seed_q3
from tests.test_family_outreach import enrol

HOSTILE = ['=HYPERLINK("http://evil.example/","点我看照片")', "+1+1", "-2+3", "@SUM(A1:A9)",
           "\t=1+1", "\r=1+1"]


@pytest.fixture
def cli_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)  # the CLI opens the same database
    monkeypatch.delenv("WARMLINE_CONFIG", raising=False)


def formulas(path: Path) -> list[str]:
    book = load_workbook(path)
    return [f"{ws.title}!{c.coordinate}" for ws in book for row in ws.iter_rows() for c in row
            if c.data_type == "f"]


def all_values(path: Path) -> list[object]:
    book = load_workbook(path)
    return [c.value for ws in book for row in ws.iter_rows() for c in row if c.value is not None]


async def test_a_familys_formula_stays_text_in_the_exported_workbook(county: App, tmp_path: Path,
                                                                     cli_key: None) -> None:
    chat = await enrol(county, "tg-formula", "李桂芳（母亲）", "确认", "1", "1", "1", "1", "2", "可以")
    await chat.say(HOSTILE[0])
    with county.db.session() as session:
        assert session.scalar(select(FamilyMessage.text)) == HOSTILE[0]
    out = tmp_path / "qx001.xlsx"
    assert main(["--db", county.settings.database_url, "export", "family", "QX001", "--format", "xlsx",
                 "--out", str(out)]) == 0
    assert formulas(out) == []
    values = all_values(out)
    assert "'" + HOSTILE[0] in values and HOSTILE[0] not in values
    assert any(isinstance(v, int) and not isinstance(v, bool) for v in values)  # numbers stay numbers


def test_activity_titles_cannot_run_in_xlsx_or_csv_reports(county: App, tmp_path: Path, cli_key: None) -> None:
    seed_q3(county)
    with county.db.session() as session:
        ids = list(session.scalars(select(Activity.id).order_by(Activity.id)))
        for activity_id, title in zip(ids, HOSTILE, strict=False):
            session.execute(update(Activity).where(Activity.id == activity_id).values(title=title))
    base = ["--db", county.settings.database_url, "report", "--period", "2026-Q3", "--as-of", "2026-11-20"]
    xlsx = tmp_path / "q3.xlsx"
    assert main([*base, "--format", "xlsx", "--out", str(xlsx)]) == 0
    assert formulas(xlsx) == []
    values = all_values(xlsx)
    shown = [v for v in values if isinstance(v, str) and v.lstrip("'") in HOSTILE]
    assert shown and all(v.startswith("'") for v in shown)
    assert any(isinstance(v, int | float) and not isinstance(v, bool) for v in values)

    archive = tmp_path / "q3.zip"
    assert main([*base, "--format", "csv", "--out", str(archive)]) == 0
    with zipfile.ZipFile(archive) as zf:
        cells = [cell for name in zf.namelist()
                 for row in csv.reader(io.StringIO(zf.read(name).decode("utf-8-sig"))) for cell in row]
    listed = [c for c in cells if c.lstrip("'") in HOSTILE]
    assert listed and all(c.startswith("'") for c in listed)
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r")]
    assert any(c.isdigit() for c in cells)  # counts are still plain numbers
