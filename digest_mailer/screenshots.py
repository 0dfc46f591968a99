"""Pictures of a composed issue: phone (375 px), desktop (700 px) and dark mode, rendered
by Playwright driving the system Chromium (Debian's ``chromium``; no browser download).

Optional: without Playwright or Chromium, :func:`take_screenshots` raises
:class:`ScreenshotsUnavailable` with one line saying how to get them, and composing goes
on without pictures.
"""

import shutil
from pathlib import Path

from digest_mailer.errors import ScreenshotsUnavailable

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = (
    ("issue-phone.png", {"viewport": {"width": 375, "height": 812}, "device_scale_factor": 2,
                         "is_mobile": True, "has_touch": True}),
    ("issue-desktop.png", {"viewport": {"width": 700, "height": 900}}),
    ("issue-dark.png", {"viewport": {"width": 700, "height": 900}, "color_scheme": "dark"}),
)  # fmt: skip
HOW = (
    "no pictures: install Debian's chromium (apt-get install chromium) and the Python "
    "package playwright (pip install 'digest-mailer[screenshots]')"
)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def take_screenshots(html_file: Path, out_dir: Path) -> list[Path]:
    """Write the three pictures of ``html_file`` into ``out_dir``; their paths."""
    executable = chromium_path()
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        raise ScreenshotsUnavailable(HOW) from None
    if executable is None:
        raise ScreenshotsUnavailable(HOW)
    written = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                for name, options in SHOTS:
                    context = browser.new_context(**options)  # type: ignore[arg-type]
                    page = context.new_page()
                    page.goto(html_file.resolve().as_uri())
                    target = out_dir / name
                    page.screenshot(path=str(target), full_page=True)
                    target.chmod(0o600)
                    context.close()
                    written.append(target)
            finally:
                browser.close()
    except Error as exc:
        raise ScreenshotsUnavailable(f"no pictures: Chromium failed: {exc}") from None
    return written
