"""The web console's files, served at `/console/` with no signature.

The console is static: HTML, CSS and JavaScript that sign every API call in the browser,
as the SDK does, with the AK/SK the user types in. So the files hold no secret and need no
credential, and the API keeps one way in. What the console can do, a signed client can.

The answers forbid every script, style, frame and connection that is not this service's
own (a Content-Security-Policy), because the page holds a secret key while it is open.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CONSOLE_DIR = Path(__file__).parent / "console"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (by ETag), so an upgraded service serves its own console.
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """The console's folder, each answer with the security headers."""

    def __init__(self) -> None:
        super().__init__(directory=CONSOLE_DIR, html=True)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


async def console_root(request: Request) -> Response:
    """`/console` -> `/console/`, so that the page's relative links resolve."""
    return RedirectResponse("/console/", status_code=308)
