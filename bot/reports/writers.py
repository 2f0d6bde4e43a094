"""Report files: XLSX (one sheet per section), CSV (one file per table), printable HTML.

All three print the same rounded values from the `Report`; only the presentation differs.
Every XLSX/CSV cell goes through `bot.reports.cells` (no text can become a formula).
CSV files are UTF-8 with a byte-order mark so Excel opens the Chinese correctly; `--out` for CSV
names a directory (one file per table, plus `00_说明.csv`), or a `.zip` file holding the same.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bot.reports.cells import safe_row
from bot.reports.charts import ChartFont, report_charts
from bot.reports.model import Column, Report, Table, Value

FORMATS = ("xlsx", "csv", "html")
NUMBER_FORMATS = {"int": "0", "float": "0.00", "pct": "0.0", "yuan": "#,##0.00"}


def display(value: Value, column: Column) -> str:
    """A value as printed on paper: thousands separators for money, '—' for no value."""
    if value is None or value == "":
        return "—" if column.kind != "text" else ""
    if column.kind == "yuan":
        return f"{float(value):,.2f}"
    if column.kind == "pct":
        return f"{float(value):.1f}"
    if column.kind == "float":
        return f"{float(value):.2f}"
    return str(value)


def info_lines(report: Report) -> list[tuple[str, str]]:
    lines = [("报表", report.title), ("范围", report.scope_label), ("期间", report.period_label),
             ("起止", f"{report.start.isoformat()} 至 {report.end.isoformat()}"),
             ("统计截至", report.as_of.isoformat()),
             ("生成时间", report.generated_at.strftime("%Y-%m-%d %H:%M"))]
    lines += [("提示", w) for w in report.warnings]
    lines += [(f"口径：{s.title}", s.definition) for s in report.sections if s.definition]
    return lines


# ---------------------------------------------------------------------------- xlsx


def _sheet_name(title: str, used: set[str]) -> str:
    name = re.sub(r"[\[\]:*?/\\]", "", title)[:31] or "Sheet"
    base, n = name, 2
    while name in used:
        name = f"{base[:28]}-{n}"
        n += 1
    used.add(name)
    return name


def _append(sheet: Any, values: list[object]) -> None:
    sheet.append(safe_row(values))


def write_xlsx(report: Report, out: Path) -> list[Path]:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    info = wb.active
    info.title = "说明"
    _append(info, [report.title])
    info["A1"].font = Font(bold=True, size=14)
    for key, text in info_lines(report):
        _append(info, [key, text])
        info.cell(info.max_row, 2).alignment = Alignment(wrap_text=True, vertical="top")
    info.column_dimensions["A"].width = 18
    info.column_dimensions["B"].width = 100
    used = {"说明"}
    head = PatternFill("solid", fgColor="DDE7F0")
    for section in report.sections:
        ws = wb.create_sheet(_sheet_name(section.title, used))
        _append(ws, [f"{report.scope_label} · {report.period_label} · {section.title}"])
        ws["A1"].font = Font(bold=True, size=13)
        widths: dict[int, int] = {}
        for table in section.tables:
            _append(ws, [])
            _append(ws, [table.title])
            ws.cell(ws.max_row, 1).font = Font(bold=True)
            _append(ws, [c.label for c in table.columns])
            for i, _c in enumerate(table.columns, start=1):
                ws.cell(ws.max_row, i).font = Font(bold=True)
                ws.cell(ws.max_row, i).fill = head
            for row in table.rows:
                _append(ws, [row.get(c.key) for c in table.columns])
                for i, c in enumerate(table.columns, start=1):
                    if c.kind in NUMBER_FORMATS:
                        ws.cell(ws.max_row, i).number_format = NUMBER_FORMATS[c.kind]
            for i, c in enumerate(table.columns, start=1):
                longest = max([len(c.label) * 2] + [len(str(r.get(c.key) or "")) * 2 for r in table.rows])
                widths[i] = max(widths.get(i, 8), min(longest, 50))
            if table.note:
                _append(ws, [table.note])
        if section.definition:
            _append(ws, [])
            _append(ws, [f"口径：{section.definition}"])
            ws.cell(ws.max_row, 1).alignment = Alignment(wrap_text=False)
        for i, w in widths.items():
            ws.column_dimensions[get_column_letter(i)].width = w
        ws.freeze_panes = "A2"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.page_setup.orientation = "landscape"
    out.parent.mkdir(parents=True, exist_ok=True)
    wb.save(out)
    return [out]


# ----------------------------------------------------------------------------- csv


def _csv_text(rows: Iterable[list[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in rows:
        writer.writerow(safe_row(["" if v is None else v for v in row]))
    return "\ufeff" + buf.getvalue()


def csv_files(report: Report) -> dict[str, str]:
    """File name -> CSV text: `00_说明.csv`, then one `NN_<table key>.csv` per table."""
    files = {"00_说明.csv": _csv_text([["项目", "内容"], *([k, v] for k, v in info_lines(report))])}
    for n, table in enumerate(report.tables(), start=1):
        files[f"{n:02d}_{table.key}.csv"] = _csv_text(
            [[c.label for c in table.columns], *([row.get(c.key) for c in table.columns] for row in table.rows)])
    return files


def write_csv(report: Report, out: Path) -> list[Path]:
    files = csv_files(report)
    if out.suffix.lower() == ".zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, text in files.items():
                zf.writestr(name, text.encode("utf-8"))
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8", newline="")
        written.append(path)
    return written


# ---------------------------------------------------------------------------- html

CSS = """
@page { size: A4; margin: 14mm 12mm; }
body { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC",
       sans-serif; font-size: 10pt; color: #222; max-width: 186mm; margin: 0 auto; }
h1 { font-size: 16pt; margin: 0 0 4pt; }
h2 { font-size: 12.5pt; margin: 14pt 0 4pt; border-bottom: 1px solid #888; page-break-after: avoid; }
h3 { font-size: 10.5pt; margin: 8pt 0 3pt; page-break-after: avoid; }
.meta { color: #555; margin-bottom: 6pt; }
.warning { border: 1.5px solid #c0392b; background: #fdecea; color: #8e1b10; padding: 5pt 8pt;
           margin: 6pt 0; font-weight: bold; }
table { border-collapse: collapse; width: 100%; margin: 2pt 0 6pt; page-break-inside: auto; }
tr { page-break-inside: avoid; }
th, td { border: 1px solid #bbb; padding: 2pt 4pt; }
th { background: #e8eef4; font-weight: bold; text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; background: #f6f6f6; }
.definition { color: #444; font-size: 8.5pt; margin: 2pt 0 8pt; }
figure { margin: 6pt 0; text-align: center; page-break-inside: avoid; }
figure img { max-width: 100%; }
figcaption { font-size: 8.5pt; color: #555; }
"""


def _table_html(table: Table) -> str:
    e = html.escape
    out = [f'<h3>{e(table.title)}</h3>', f'<table data-key="{e(table.key)}">', "<thead><tr>"]
    out += [f'<th data-key="{e(c.key)}">{e(c.label)}</th>' for c in table.columns]
    out.append("</tr></thead><tbody>")
    for row in table.rows:
        total = row.get("level") == "合计" or next(iter(row.values()), None) == "合计"
        out.append('<tr class="total">' if total else "<tr>")
        for c in table.columns:
            cls = ' class="num"' if c.kind not in ("text", "date") else ""
            out.append(f"<td{cls}>{e(display(row.get(c.key), c))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if table.note:
        out.append(f'<p class="definition">{e(table.note)}</p>')
    return "".join(out)


def render_html(report: Report, font: ChartFont) -> str:
    e = html.escape
    charts: dict[str, list[tuple[str, bytes]]] = {}
    for key, caption, png in report_charts(report, font):
        charts.setdefault(key, []).append((caption, png))
    warnings = [*report.warnings, *([font.warning] if font.warning else [])]
    parts = [
        "<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{e(report.title)} {e(report.period_label)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
        f'<p class="meta">期间：{e(report.period_label)}（{report.start.isoformat()} 至 {report.end.isoformat()}）'
        f" · 统计截至 {report.as_of.isoformat()} · 生成于 {report.generated_at.strftime('%Y-%m-%d %H:%M')}</p>",
    ]
    parts += [f'<p class="warning">{e(w)}</p>' for w in warnings]
    for section in report.sections:
        parts.append(f'<section id="{e(section.key)}"><h2>{e(section.title)}</h2>')
        for caption, png in charts.get(section.key, []):
            data = base64.b64encode(png).decode("ascii")
            parts.append(f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{e(caption)}</figcaption></figure>")
        parts += [_table_html(t) for t in section.tables]
        if section.definition:
            parts.append(f'<p class="definition">口径：{e(section.definition)}</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: Report, out: Path, font: ChartFont) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report, font), encoding="utf-8")
    return [out]


def write_report(report: Report, fmt: str, out: Path, font: ChartFont) -> list[Path]:
    if fmt == "xlsx":
        return write_xlsx(report, out)
    if fmt == "csv":
        return write_csv(report, out)
    if fmt == "html":
        return write_html(report, out, font)
    raise ValueError(f"unknown format {fmt!r}")
