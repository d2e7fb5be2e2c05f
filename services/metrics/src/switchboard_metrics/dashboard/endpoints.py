"""``GET /dashboard``: the ops dashboard page, and its script and style sheet under ``/dashboard/static/``.

The page and its assets are public: they hold no data. The page asks for the admin API key and sends it,
from the browser, to ``/v1/kpis``, ``/v1/kpis/stream`` and ``/v1/ops/health``, which check it. Nothing
comes from another origin, so the content security policy allows only this origin's scripts, styles and
connections, and no inline script at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import HTMLResponse

from switchboard_common.http.errors import ApiError

router = APIRouter(tags=["dashboard"])

_STATIC = resources.files("switchboard_metrics.dashboard").joinpath("static")

# The only files served: a fixed list, so no request path ever reaches the file system.
_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}

_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# An asset asked for with its current version never changes; any other request revalidates (ETag).
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    version: str  # the first 16 hex digits of the content's SHA-256: its URL's ``?v=`` and its ETag

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@cache
def _asset(name: str) -> Asset:
    body = _STATIC.joinpath(name).read_bytes()
    return Asset(body, _ASSETS[name], hashlib.sha256(body).hexdigest()[:16])


@cache
def _page() -> str:
    """The page, its asset links carrying each asset's version: a deploy changes the URL, so a browser
    never runs a new page with an old cached script."""
    html = _STATIC.joinpath("index.html").read_text(encoding="utf-8")
    for name in _ASSETS:
        html = html.replace("{{version:" + name + "}}", _asset(name).version)
    return html


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(
        _page(),
        headers={
            **_SECURITY_HEADERS,
            "Content-Security-Policy": _POLICY,
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
        },
    )


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def static_asset(
    name: str,
    v: Annotated[str | None, Query(max_length=64)] = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    if name not in _ASSETS:
        raise ApiError(404, "no such dashboard asset")
    asset = _asset(name)
    headers = {
        **_SECURITY_HEADERS,
        "ETag": asset.etag,
        "Cache-Control": _IMMUTABLE if v == asset.version else _REVALIDATE,
    }
    if if_none_match is not None and asset.etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
