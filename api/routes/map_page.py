"""The live map (/map) and a page per school (/schools/{school}): HTML shells around the bundled scripts.

The scripts, styles and the Taiwan outline are built from frontend/ (npm, esbuild) into
api/static/dist by `make frontend`; nothing is loaded from another site except the tiles of
CITYSENSE_MAP_TILES (none when it is empty). Each page gets its settings in a JSON block, so
the scripts hold no configuration of their own.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.params import NO_NUL

router = APIRouter(tags=["map"])

STATIC = resources.files("api").joinpath("static")
BUNDLE_FILES = ("dist/map.js", "dist/map.css", "dist/school.js", "dist/school.css", "dist/taiwan-outline.json")
NOT_BUILT = (
    "<!doctype html><meta charset=utf-8><title>citysense: page not built</title>"
    "<p>The map's scripts are not built: run <code>make frontend</code> (npm ci and esbuild in frontend/).</p>"
)


def static_files() -> StaticFiles:
    """api/static at /static: the pages' bundles, the Taiwan outline, the message catalogues."""
    return StaticFiles(packages=[("api", "static")])


def _missing_bundle() -> list[str]:
    return [name for name in BUNDLE_FILES if not STATIC.joinpath(name).is_file()]


def _page(template: str, config: dict[str, Any]) -> HTMLResponse:
    """The template with its config block; `</` escaped so no setting can close the script element."""
    if _missing_bundle():
        return HTMLResponse(NOT_BUILT, status_code=503)
    block = orjson.dumps(config).decode().replace("</", "<\\/")
    html = STATIC.joinpath(template).read_text(encoding="utf-8").replace("__CITYSENSE_CONFIG__", block)
    # the map's slowest request starts while the HTML is parsed (a preload); a scale key is [a-z0-9_]
    return HTMLResponse(html.replace("__CITYSENSE_SCALE__", quote(config["scale"])))


def _config(request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    return {"tiles": settings.map_tiles, "attribution": settings.map_tiles_attribution,
            "scale": settings.aqi_default_scale, "timezone": settings.local_timezone}


@router.get("/map", response_class=HTMLResponse, include_in_schema=False)
async def live_map(request: Request) -> HTMLResponse:
    return _page("map.html", _config(request))


@router.get("/schools/{school}", response_class=HTMLResponse, include_in_schema=False)
async def school_page(
    request: Request, school: Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL)]
) -> HTMLResponse:
    """The page is served for any name; the script asks /v1/schools/{school} and says when it is unknown."""
    return _page("school.html", {**_config(request), "school": school})


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/map")
