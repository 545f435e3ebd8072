"""The web studio: static files shipped in the package (flashbulb/web), served at `/` and `/studio/...`.

The page is a client of the public APIs only (Gemini generateContent and models, /flashbulb/account,
/admin for admin keys); it holds no server state. Its content security policy lets it talk to this
origin and nowhere else, so the API key the visitor types can only ever go to this server.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parent.parent / "web"

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


class StudioFiles(StaticFiles):
    """Static files with the page's security headers, revalidated on every load (so an upgrade shows)."""

    async def get_response(self, path: str, scope):
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def install(app: FastAPI) -> None:
    """`/` is the studio page; its scripts and styles live under `/studio/` (no API path starts so)."""
    app.mount("/studio", StudioFiles(directory=WEB), name="studio")

    @app.get("/", include_in_schema=False)
    async def studio_page() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)
