"""Open a report in headless Chromium: a screenshot, and the console errors the page logged.

Tests use it to check that a self-contained page renders with no script errors; run as a module it writes
a full-page screenshot of a report:

    python -m annotaudit.testing.browser REPORT.html OUT.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1200
TALLEST = 16000  # past this Chromium's screenshot gets unreliable


def find_chromium(install: bool = False) -> str | None:
    """Debian's chromium, or None; with `install`, apt-get installs it first when running as root."""
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], capture_output=True, text=True, timeout=900)
    return CHROMIUM if Path(CHROMIUM).is_file() else None


def screenshot(page: Path, shot: Path, profile: Path, height: int = 1600) -> str:
    """Load the page headless in a WIDTH x height window, write a screenshot, return Chromium's log (console messages included)."""
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError(f"headless Chromium is needed and {CHROMIUM} is missing")
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", f"--window-size={WIDTH},{height}", "--hide-scrollbars",
        f"--screenshot={shot}", Path(page).resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not Path(shot).is_file():
        raise RuntimeError(f"no screenshot; chromium said:\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def console_errors(log: str) -> list[str]:
    """Console messages Chromium logged at error level, and uncaught exceptions."""
    lines = [ln for ln in log.splitlines() if "CONSOLE" in ln]
    return [ln for ln in lines if ":ERROR:" in ln or "Uncaught" in ln or "Error" in ln]


def _content_bottom(image: Image.Image) -> int:
    """The row below the last one that is not plain background."""
    gray = image.convert("L")
    background = gray.getpixel((0, gray.height - 1))
    mask = gray.point(lambda v: 255 if abs(v - background) > 8 else 0)
    box = mask.getbbox()
    return box[3] if box else 0


def full_page(page: Path, shot: Path, height: int = 6000) -> Path:
    """A screenshot of the whole page: a window tall enough for all of it (grown while the content reaches its bottom), then
    the empty space below the content cut off."""
    with tempfile.TemporaryDirectory() as profile:
        while True:
            screenshot(page, shot, Path(profile), height)
            image = Image.open(shot)
            image.load()
            bottom = _content_bottom(image)
            if bottom < image.height - 40 or height >= TALLEST:
                break
            height = min(TALLEST, height * 2)
    image.crop((0, 0, image.width, min(image.height, bottom + 40))).save(shot)
    return Path(shot)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a full-page screenshot of an HTML report with headless Chromium.")
    parser.add_argument("page", type=Path, help="the report's HTML file")
    parser.add_argument("shot", type=Path, help="the PNG to write")
    parser.add_argument("--height", type=int, default=6000, help="the first window height to try (grown when the page is taller)")
    args = parser.parse_args(argv)
    print(full_page(args.page, args.shot, args.height))


if __name__ == "__main__":
    main()
