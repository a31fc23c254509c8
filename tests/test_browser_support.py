"""The browser stack itself: the system's Chromium, driven by Playwright, runs a page's
script and saves a screenshot (a static page of its own, not the console)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

from tests.support.browser import screenshot
from tests.support.servers import free_port

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

GREETING_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>greeting</title></head>
<body>
  <p id="greeting">waiting</p>
  <button id="greet" type="button">greet</button>
  <script>
    document.getElementById("greet").addEventListener("click", () => {
      document.getElementById("greeting").textContent = "clicked";
    });
  </script>
</body></html>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[str]:
    """The URL of a folder holding index.html, served on 127.0.0.1 until teardown."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(GREETING_PAGE)
    handler = functools.partial(QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_click_runs_the_pages_script_and_the_screenshot_is_saved(
    page: Page, static_site: str
) -> None:
    page.goto(static_site)
    assert page.inner_text("#greeting") == "waiting"

    page.click("#greet")

    assert page.inner_text("#greeting") == "clicked"
    shot = screenshot(page, "browser-support")
    assert shot.name == "browser-support.png"
    assert shot.read_bytes().startswith(b"\x89PNG")
