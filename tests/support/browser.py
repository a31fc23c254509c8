"""Headless Chromium for the console's tests: Debian's `chromium` driven by Playwright.

Playwright's own browser builds are never downloaded; `launch` points it at the system's
Chromium, skipped (a failure under `--require-all`) when that or Playwright is missing.
Screenshots go to `--console-screenshots DIR` (`make screenshots`: the README's
pictures) or, by default, under pytest's base temporary directory, never into the repo.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize
    from playwright.sync_api._context_manager import PlaywrightContextManager

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS_OPTION = "--console-screenshots"

# As root, offline, without a display: no sandbox (it refuses root), no GPU, and none of
# the calls home a first start makes.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
DESKTOP_VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
PHONE_VIEWPORT: ViewportSize = {"width": 390, "height": 844}

_screenshot_dir: Path | None = None


def chromium_path() -> Path:
    """The system's Chromium executable; skipped when there is none."""
    if CHROMIUM.is_file():
        return CHROMIUM
    found = shutil.which("chromium")
    if found is None:
        pytest.skip(f"chromium is not installed (no {CHROMIUM}, none on PATH; make system-deps)")
    return Path(found)


def sync_playwright() -> PlaywrightContextManager:
    """Playwright's sync entry point; skipped when the package is missing."""
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError as exc:
        pytest.skip(f"could not import playwright ({exc}); pip install -e '.[test]'")
    return start()


def launch(playwright: Playwright) -> Browser:
    """A headless Chromium, the system's, started by `playwright`."""
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS)
    )


def desktop_context(browser: Browser) -> BrowserContext:
    """A fresh context (cookies, storage) with a 1280x800 window."""
    return browser.new_context(viewport=DESKTOP_VIEWPORT)


def phone_context(browser: Browser) -> BrowserContext:
    """A fresh context as a phone sees pages: 390x844, touch, a mobile viewport."""
    return browser.new_context(viewport=PHONE_VIEWPORT, is_mobile=True, has_touch=True)


def keep_screenshots_in(directory: Path) -> None:
    """Where `screenshot` writes (set once per session by the `browser` fixture)."""
    global _screenshot_dir
    _screenshot_dir = directory


def screenshot(page: Page, name: str) -> Path:
    """Save the page as `<dir>/<name>.png` and return its path."""
    if _screenshot_dir is None:
        raise RuntimeError("no screenshot directory: take pages from the browser fixture")
    _screenshot_dir.mkdir(parents=True, exist_ok=True)
    path = _screenshot_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def failure_name(nodeid: str) -> str:
    """A file name for a failed test's screenshot."""
    return "failed-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")
