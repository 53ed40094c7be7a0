"""The shared report opens from disk in a real browser (headless Chromium) with no console errors."""

from __future__ import annotations

import re

from PIL import Image, ImageStat

from annotaudit.core.report import Report
from annotaudit.testing.browser import console_errors, screenshot


def _report() -> Report:
    r = Report("Browser check")
    r.text("A table, a chart and an image, as every annotaudit report has.")
    r.table([{"model": "a", "f1": 0.91, "yes_ratio": 0.5}, {"model": "b", "f1": 0.42, "yes_ratio": 0.97}], caption="POPE")
    r.bar_chart({"a": {"random": 0.9, "popular": 0.8}, "b": {"random": 0.5, "popular": 0.4}}, "F1")
    r.image(Image.new("RGB", (40, 30), (200, 30, 30)), "a red box")
    return r


def test_report_renders_in_headless_chromium_without_console_errors(chromium, tmp_path):
    _, page = _report().write(tmp_path / "report")
    html = page.read_text()
    assert "data:image/png;base64," in html and "<script>" in html and "http" not in html.split("<body>")[1].split("data:")[0]
    log = screenshot(page, tmp_path / "shot.png", tmp_path / "profile")
    assert console_errors(log) == [], console_errors(log)
    shot = Image.open(tmp_path / "shot.png").convert("RGB")
    assert shot.size[0] >= 800
    assert max(ImageStat.Stat(shot).stddev) > 10  # something was drawn: not a blank page


def test_a_broken_page_is_caught(chromium, tmp_path):
    """The check above can fail: a page whose script throws shows up as a console error."""
    _, page = _report().write(tmp_path / "report")
    bad = page.with_name("broken.html")
    bad.write_text(re.sub("</body>", "<script>undefinedFunction();</script></body>", page.read_text()))
    log = screenshot(bad, tmp_path / "shot.png", tmp_path / "profile")
    assert any("undefinedFunction" in e for e in console_errors(log))
