"""The small live-map page (self-contained: no tiles or scripts from the internet)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

router = APIRouter(tags=["map"])
_PAGE = resources.files("api").joinpath("static/map.html").read_text(encoding="utf-8")


@router.get("/map", response_class=HTMLResponse, include_in_schema=False)
async def live_map() -> HTMLResponse:
    return HTMLResponse(_PAGE)


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/map")
