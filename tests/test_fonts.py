"""Charts render 汉字 on a machine with no fonts: the font arrives with `pip install`.

Each check runs in a fresh Python process whose matplotlib sees no system font at all: a new
MPLCONFIGDIR (no cached font list) and a font manager rebuilt from matplotlib's own files only
(DejaVu, no CJK glyphs) — what a fresh server without any font package looks like.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# These run real processes on SQLite files and matplotlib, never on the test database server:
# once, on the SQLite pass of the suite, is enough.
pytestmark = pytest.mark.skipif(bool(os.environ.get("WARMLINE_TEST_DATABASE_URL")),
                                reason="process checks independent of the database; run on the SQLite pass")


# Hides every system font from matplotlib, then runs the rest of the program given.
HIDE_FONTS = """
import matplotlib
matplotlib.use("Agg")
from pathlib import Path

import pytest
from matplotlib import font_manager as fm
own = Path(matplotlib.get_data_path()) / "fonts"
fm.fontManager.ttflist = [f for f in fm.fontManager.ttflist if own in Path(f.fname).parents]
fm.fontManager.afmlist = [f for f in fm.fontManager.afmlist if own in Path(f.fname).parents]
fm.fontManager._findfont_cached.cache_clear()
fm.findSystemFonts = lambda fontpaths=None, fontext="ttf": []
assert fm.fontManager.ttflist and not any("CJK" in f.name or "WenQuanYi" in f.name for f in fm.fontManager.ttflist)
"""

RENDER = """
import warnings
import numpy as np
from matplotlib.figure import Figure
from matplotlib.backends.backend_agg import FigureCanvasAgg
from bot.reports.charts import default_font, packaged_font_file

font = default_font()
print("family", font.family)
print("file", fm.findfont(fm.FontProperties(family=font.family), fallback_to_default=False)
      == str(packaged_font_file()))

def pixels(text):
    with matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": [font.family]}):
        fig = Figure(figsize=(1, 1), dpi=100)
        fig.text(0.1, 0.3, text, fontsize=40)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba()).copy()

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    han, zi = pixels("汉"), pixels("字")
print("missing-glyph warnings", sum("missing from font" in str(w.message) for w in caught))
# With no CJK glyphs both characters come out as the same empty box; real glyphs differ.
print("distinct glyphs", bool((han != zi).any()), "inked", bool((han[..., :3] < 128).any()))
"""


def run_hidden(code: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mplconfig"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", HIDE_FONTS + code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_chinese_renders_with_system_fonts_hidden(tmp_path: Path) -> None:
    result = run_hidden(RENDER, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "family Noto Sans CJK SC" in out and "file True" in out
    assert "missing-glyph warnings 0" in out
    assert "distinct glyphs True inked True" in out


def test_the_chart_tests_pass_with_system_fonts_hidden(tmp_path: Path) -> None:
    """The test files that draw charts, run as the README runs them, with missing glyphs as errors."""
    code = "\nimport pytest, sys\nsys.exit(pytest.main(sys.argv[1:]))\n"
    result = run_hidden(code, tmp_path, "-q", "-W", "error:Glyph:UserWarning",
                        "-p", "no:cacheprovider", "tests/test_reports.py", "tests/test_report_formats.py")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
