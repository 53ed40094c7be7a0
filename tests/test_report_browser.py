"""The shared report opens from disk in a real browser (headless Chromium) with no console errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from annotaudit.core.report import Report

CHROMIUM = "/usr/bin/chromium"


def _chromium() -> str:
    """Debian's chromium; installed here when running as root, else the test is skipped with the reason."""
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("headless Chromium needed: /usr/bin/chromium is missing and apt-get install needs root")
    done = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not Path(CHROMIUM).is_file():
        pytest.skip(f"could not install chromium: {done.stderr[-300:]}")
    return CHROMIUM


def _open(page: Path, shot: Path, profile: Path) -> str:
    """Load the page headless, write a screenshot, return Chromium's log (console messages included)."""
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", "--window-size=1200,1600",
        f"--screenshot={shot}", page.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot; chromium said:\n{done.stderr[-2000:]}"
    return done.stdout + done.stderr


def console_errors(log: str) -> list[str]:
    """Console messages Chromium logged at error level, and uncaught exceptions."""
    lines = [ln for ln in log.splitlines() if "CONSOLE" in ln]
    return [ln for ln in lines if ":ERROR:" in ln or "Uncaught" in ln or "Error" in ln]


def _report() -> Report:
    r = Report("Browser check")
    r.text("A table, a chart and an image, as every annotaudit report has.")
    r.table([{"model": "a", "f1": 0.91, "yes_ratio": 0.5}, {"model": "b", "f1": 0.42, "yes_ratio": 0.97}], caption="POPE")
    r.bar_chart({"a": {"random": 0.9, "popular": 0.8}, "b": {"random": 0.5, "popular": 0.4}}, "F1")
    r.image(Image.new("RGB", (40, 30), (200, 30, 30)), "a red box")
    return r


def test_report_renders_in_headless_chromium_without_console_errors(tmp_path):
    _, page = _report().write(tmp_path / "report")
    html = page.read_text()
    assert "data:image/png;base64," in html and "<script>" in html and "http" not in html.split("<body>")[1].split("data:")[0]
    log = _open(page, tmp_path / "shot.png", tmp_path / "profile")
    assert console_errors(log) == [], console_errors(log)
    shot = Image.open(tmp_path / "shot.png").convert("RGB")
    assert shot.size[0] >= 800
    assert max(ImageStat.Stat(shot).stddev) > 10  # something was drawn: not a blank page


def test_a_broken_page_is_caught(tmp_path):
    """The check above can fail: a page whose script throws shows up as a console error."""
    _, page = _report().write(tmp_path / "report")
    bad = page.with_name("broken.html")
    bad.write_text(re.sub("</body>", "<script>undefinedFunction();</script></body>", page.read_text()))
    log = _open(bad, tmp_path / "shot.png", tmp_path / "profile")
    assert any("undefinedFunction" in e for e in console_errors(log))
