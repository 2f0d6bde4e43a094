"""The same hand counts, read back from every file format `warmline report` writes."""

from __future__ import annotations

import csv
import io
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bot.app import App
from bot.cli import main
from bot.reports.model import Report
from bot.reports.periods import parse_period
from bot.reports.service import make_report
from tests.conftest import TEST_DATA_KEY
from tests.report_expected import EXPECTED, expected_rows, picked
from tests.report_seed import seed_q3


@pytest.fixture
def q3(county: App, monkeypatch: pytest.MonkeyPatch) -> App:
    seed_q3(county)
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)  # the CLI opens the same database
    return county


@pytest.fixture
def report(q3: App) -> Report:
    with q3.db.session() as session:
        return make_report(session, q3.settings, period=parse_period("2026-Q3"), now=q3.services.now())


def run_cli(app: App, *args: str) -> int:
    return main(["--db", app.settings.database_url, "report", "--period", "2026-Q3",
                 "--as-of", "2026-11-20", *args])


def check(tables: dict[str, tuple[list[str], list[list[object]]]], report: Report) -> None:
    """Every expected table is there, with its columns labelled as in the report, and right."""
    wrong = {}
    for key in EXPECTED:
        columns = report.table(key).columns
        labels, rows = tables[key]
        assert labels == [c.label for c in columns], key
        got = picked([c.key for c in columns], rows, key)
        if got != expected_rows(key):
            wrong[key] = (got, expected_rows(key))
    assert not wrong, "\n".join(f"{k}:\n  got      {g}\n  expected {e}" for k, (g, e) in wrong.items())


def test_xlsx_has_one_sheet_per_section_and_every_figure(q3: App, report: Report, tmp_path: Path) -> None:
    out = tmp_path / "q3.xlsx"
    assert run_cli(q3, "--format", "xlsx", "--out", str(out)) == 0
    wb = load_workbook(out)
    assert wb.sheetnames == ["说明", *(s.title for s in report.sections)]
    tables: dict[str, tuple[list[str], list[list[object]]]] = {}
    for section in report.sections:
        ws = wb[section.title]
        cells = [list(r) for r in ws.iter_rows(values_only=True)]
        for table in section.tables:
            at = next(i for i, r in enumerate(cells) if r[0] == table.title)
            width = len(table.columns)
            labels = [str(v) for v in cells[at + 1][:width]]
            body = []
            for r in cells[at + 2:]:
                if all(v is None for v in r):
                    break
                body.append(list(r[:width]))
            tables[table.key] = (labels, body)
    check(tables, report)
    info = [r for r in wb["说明"].iter_rows(values_only=True)]
    assert ("范围", "青山县（演示）") in [tuple(r[:2]) for r in info]
    assert any(str(r[0]).startswith("口径：每周问候") for r in info)


def _read_csv(text: str) -> tuple[list[str], list[list[object]]]:
    assert text.startswith("\ufeff")  # Excel reads the Chinese as UTF-8
    rows = list(csv.reader(io.StringIO(text[1:])))
    return rows[0], [list(r) for r in rows[1:]]


def test_csv_directory_has_one_file_per_table(q3: App, report: Report, tmp_path: Path) -> None:
    out = tmp_path / "q3-csv"
    assert run_cli(q3, "--format", "csv", "--out", str(out)) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "00_说明.csv" and len(files) == 1 + len(report.tables())
    tables = {}
    for path in out.glob("[0-9][0-9]_*.csv"):
        key = path.stem.split("_", 1)[1]
        if key != "说明":
            tables[key] = _read_csv(path.read_text(encoding="utf-8"))
    check(tables, report)


def test_csv_zip_holds_the_same_files(q3: App, report: Report, tmp_path: Path) -> None:
    out = tmp_path / "q3.zip"
    assert run_cli(q3, "--out", str(out)) == 0  # the format follows from .zip
    with zipfile.ZipFile(out) as zf:
        tables = {name.split("_", 1)[1][:-4]: _read_csv(zf.read(name).decode("utf-8"))
                  for name in zf.namelist() if not name.startswith("00_")}
    check(tables, report)


class Tables(HTMLParser):
    """Collects <table data-key> headers and cells, and the page's warnings and images."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[list[str], list[list[object]]]] = {}
        self.key: str | None = None
        self.cell: list[str] | None = None
        self.row: list[object] | None = None
        self.images: list[str] = []
        self.in_warning = False
        self.warnings: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.key = a.get("data-key")
            self.tables[str(self.key)] = ([], [])
        elif tag == "tr" and self.key:
            self.row = []
        elif tag in ("td", "th") and self.key:
            self.cell = []
        elif tag == "img":
            self.images.append(str(a.get("src")))
        elif tag == "p" and a.get("class") == "warning":
            self.in_warning = True
            self.warnings.append("")

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        if self.in_warning:
            self.warnings[-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell))
            self.cell = None
        elif tag == "tr" and self.row is not None and self.key:
            labels, rows = self.tables[self.key]
            if not labels:
                labels.extend(str(v) for v in self.row)
            else:
                rows.append(self.row)
            self.row = None
        elif tag == "table":
            self.key = None
        elif tag == "p":
            self.in_warning = False


def test_html_page_has_every_figure_and_its_charts(q3: App, report: Report, tmp_path: Path) -> None:
    out = tmp_path / "q3.html"
    assert run_cli(q3, "--format", "html", "--out", str(out)) == 0
    text = out.read_text(encoding="utf-8")
    assert "size: A4" in text and '<html lang="zh-CN">' in text
    page = Tables()
    page.feed(text)
    check(page.tables, report)
    assert len(page.images) == 3 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert page.warnings == []  # a Chinese font is installed on this machine (see .ci/run)


def test_cli_refuses_bad_input_kindly(q3: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", q3.settings.database_url, "report", "--period", "2026-Q9",
                 "--format", "csv", "--out", str(tmp_path / "x")]) == 2
    assert "2026-Q3" in capsys.readouterr().err
    assert run_cli(q3, "--township", "没有乡", "--format", "csv", "--out", str(tmp_path / "y")) == 2
    assert "没有这个乡镇" in capsys.readouterr().err
    assert run_cli(q3, "--out", str(tmp_path / "z.pdf")) == 2
    assert "--format" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("x", "y", "z.pdf"))  # nothing half-written
