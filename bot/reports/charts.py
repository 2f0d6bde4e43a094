"""Charts for reports (PNG, matplotlib), with Chinese labels that render on a fresh machine.

Matplotlib's default font has no Chinese glyphs; labels would come out as empty boxes. The font
comes with `pip install`: the `noto-cjk-sans-otc` package ships Noto Sans CJK (Regular, SIL Open
Font License 1.1), registered with matplotlib here and used by every chart, so charts do not
depend on what fonts the machine has. Only if that package is missing do we look for a system
CJK font (by family name, then among font files); if there is none the charts are still drawn,
and the report carries a clear warning saying how to get the font.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bot.reports.frame import TOTAL, TOWNSHIP, VOLUNTEER
from bot.reports.model import Report

PACKAGED_FAMILY = "Noto Sans CJK SC"  # the Simplified Chinese face of the packaged collection
CJK_FAMILIES = (
    "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
    "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Microsoft YaHei", "SimHei", "PingFang SC",
    "Heiti SC", "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN",
)
CJK_FILE_HINTS = ("wqy", "notosanscjk", "notoserifcjk", "noto sans cjk", "sourcehansans", "simhei",
                  "msyh", "droidsansfallback", "uming", "ukai", "pingfang")
FONT_PACKAGE = "noto-cjk-sans-otc"
NO_FONT_WARNING = (f"未找到中文字体，图表中的中文可能显示为方框。请重新安装暖心（python3 -m pip install -e .，会装上 {FONT_PACKAGE}）"
                   f"后重新生成（No CJK font found: Chinese chart labels may show as boxes; reinstall Warmline "
                   f"so that the {FONT_PACKAGE} package is there.）")


@dataclass(frozen=True)
class ChartFont:
    family: str | None

    @property
    def warning(self) -> str | None:
        return None if self.family else NO_FONT_WARNING


def packaged_font_file() -> Path | None:
    """The CJK font file that arrives with `pip install` (None if the package is missing)."""
    try:
        from noto_cjk_sans_otc import FONT_PATH
    except ImportError:
        return None
    path = Path(str(FONT_PATH))
    return path if path.is_file() else None


def register_packaged_font() -> str | None:
    """Register the packaged font with matplotlib; the family name charts should ask for."""
    path = packaged_font_file()
    if path is None:
        return None
    from matplotlib import font_manager

    try:
        font_manager.fontManager.addfont(str(path))
    except (OSError, RuntimeError, ValueError):
        return None
    names = [f.name for f in font_manager.fontManager.ttflist if Path(f.fname) == path]
    # Matplotlib reads every face of the collection in recent versions, only the first in older.
    return PACKAGED_FAMILY if PACKAGED_FAMILY in names else (names[0] if names else None)


def find_cjk_font(families: Sequence[str] = CJK_FAMILIES,
                  font_files: Sequence[str] | None = None, *, packaged: bool = True) -> ChartFont:
    """The CJK font charts use: the packaged one; else a system one by family name, else by
    scanning font files."""
    from matplotlib import font_manager

    if packaged:
        family = register_packaged_font()
        if family:
            return ChartFont(family)
    known = {f.name for f in font_manager.fontManager.ttflist}
    for family in families:
        if family in known:
            return ChartFont(family)
    files = font_manager.findSystemFonts() if font_files is None else font_files
    for path in files:
        flat = Path(path).name.lower().replace("-", "").replace("_", "")
        if any(hint.replace(" ", "") in flat for hint in CJK_FILE_HINTS):
            try:
                font_manager.fontManager.addfont(path)
                name = font_manager.FontProperties(fname=path).get_name()
            except (OSError, RuntimeError, ValueError):
                continue
            if not families or name in families or any(h in name.lower() for h in ("cjk", "wenquanyi", "han")):
                return ChartFont(name)
    return ChartFont(None)


@cache
def default_font() -> ChartFont:
    return find_cjk_font()


def _png(fig: object, font: ChartFont) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        if font.family is None:  # the report already warns, once and clearly
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")  # type: ignore[attr-defined]
    return buf.getvalue()


def _rc(font: ChartFont) -> dict[str, object]:
    family = [font.family, "DejaVu Sans"] if font.family else ["DejaVu Sans"]
    return {"font.family": "sans-serif", "font.sans-serif": family, "axes.unicode_minus": False}


RATE_SERIES = (
    ("greetings", "greeted_pct", "每周问候覆盖率"),
    ("holidays", "met_pct", "节日问候达标率"),
    ("health", "met_pct", "健康服务户月达标率"),
    ("birthdays", "done_pct", "生日走访完成率"),
)


def rate_groups(report: Report, max_groups: int = 12) -> tuple[str, list[str]]:
    """Which rows to compare: townships in a county report, volunteers in a township report."""
    rows = report.table("greetings").rows
    level = TOWNSHIP if any(r["level"] == TOWNSHIP for r in rows) else VOLUNTEER
    names = [str(r["name"]) for r in rows if r["level"] == level][:max_groups]
    return level, [report.scope_label, *names]


def rates_chart(report: Report, font: ChartFont) -> bytes:
    """Grouped bars: the four service rates (percent) for the scope and each township/volunteer."""
    import matplotlib
    from matplotlib.figure import Figure

    level, names = rate_groups(report)
    with matplotlib.rc_context(_rc(font)):
        fig = Figure(figsize=(7.2, 3.6))
        ax = fig.add_subplot()
        width = 0.8 / len(RATE_SERIES)
        for i, (table_key, column, label) in enumerate(RATE_SERIES):
            rows = report.table(table_key).rows
            values = []
            for n, name in enumerate(names):
                want = TOTAL if n == 0 else level
                row = next((r for r in rows if r["level"] == want and r["name"] == name), None)
                values.append(float(row[column] or 0) if row else 0.0)
            xs = [x + (i - 1.5) * width for x in range(len(names))]
            ax.bar(xs, values, width, label=label)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center")
        ax.set_ylim(0, 105)
        ax.set_ylabel("%")
        ax.axhline(100, color="#999999", linewidth=0.8, linestyle="--")
        ax.set_title(f"{report.scope_label} · {report.period_label} 服务完成情况")
        ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.12 if len(names) <= 5 else -0.25),
                  frameon=False)
        return _png(fig, font)


def trend_chart(report: Report, font: ChartFont) -> bytes | None:
    rows = report.table("assessment_trend").rows
    if not rows:
        return None
    import matplotlib
    from matplotlib.figure import Figure

    table = report.table("assessment_trend")
    with matplotlib.rc_context(_rc(font)):
        fig = Figure(figsize=(7.2, 3.0))
        ax = fig.add_subplot()
        months = [str(r["month"]) for r in rows]
        for column in table.columns[2:]:
            ax.plot(months, [float(r[column.key] or 0) for r in rows], marker="o", label=column.label)
        ax.set_title("评估得分趋势（月平均）")
        ax.legend(fontsize=8, ncols=2)
        return _png(fig, font)


def money_chart(report: Report, font: ChartFont) -> bytes:
    import matplotlib
    from matplotlib.figure import Figure

    level, names = rate_groups(report)
    rows = report.table("money").rows
    picked = [next((r for r in rows if r["level"] == (TOTAL if i == 0 else level) and r["name"] == n), None)
              for i, n in enumerate(names)]
    with matplotlib.rc_context(_rc(font)):
        fig = Figure(figsize=(7.2, 3.0))
        ax = fig.add_subplot()
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [float(r["entitled"] or 0) if r else 0 for r in picked], 0.4, label="期内应得")
        ax.bar([x + 0.2 for x in xs], [float(r["spent"] or 0) if r else 0 for r in picked], 0.4, label="已记录支出")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=20 if len(names) > 5 else 0)
        ax.set_ylabel("元")
        ax.set_title("节日走访经费：应得与支出")
        ax.legend(fontsize=8)
        return _png(fig, font)


def report_charts(report: Report, font: ChartFont) -> list[tuple[str, str, bytes]]:
    """(section key, caption, PNG) for the HTML page."""
    out = [("overview", "服务完成情况", rates_chart(report, font))]
    trend = trend_chart(report, font)
    if trend is not None:
        out.append(("casework", "评估得分趋势", trend))
    out.append(("money", "节日走访经费", money_chart(report, font)))
    return out
