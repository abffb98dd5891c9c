"""`/sta/v1.1`: the OGC SensorThings API 1.1, read-only (see api/sensorthings/ for how)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from api.deps import DbDep
from api.errors import READ_ERRORS
from api.rate_limit import RateLimited
from api.sensorthings.errors import StaBadRequest, StaNotFound
from api.sensorthings.query_runner import QueryRunner, service_root

PREFIX = "/sta/v1.1"


class StaErrorOut(BaseModel):
    """A SensorThings error body, as FROST-Server answers them."""

    code: int
    type: str
    message: str


_STA_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": StaErrorOut, "description": "A query option or $filter it cannot answer: `message` says why"},
    404: {"model": StaErrorOut, "description": "No such entity or navigation path"},
}
_STA_OK: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/plain": {}},
          "description": "An entity, a collection, or a property's raw value ($value)"},
}
router = APIRouter(prefix=PREFIX, tags=["sensorthings"], dependencies=[RateLimited], responses=READ_ERRORS)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"code": status, "type": "error", "message": message}, status)


@router.get("", summary="SensorThings service root: the entity sets and conformance classes")
async def root(request: Request) -> Response:
    return _json(service_root(_base(request)))


@router.get(
    "/{resource_path:path}", responses={**_STA_OK, **_STA_ERRORS},
    summary="Any SensorThings resource path with $filter, $expand, $select, $orderby, $top, $skip, $count",
)
async def resource(resource_path: str, request: Request, db: DbDep) -> Response:
    if not resource_path.strip("/"):
        return _json(service_root(_base(request)))
    try:
        body = await QueryRunner(db, _base(request)).get(resource_path, dict(request.query_params))
    except StaBadRequest as exc:
        return _error(400, str(exc))
    except StaNotFound as exc:
        return _error(404, str(exc))
    if isinstance(body, str):
        return PlainTextResponse(body)
    return _json(body)


async def not_found_anywhere(request: Request, exc: Exception) -> Response:
    """The app's 404 for a path no route matched: under the SensorThings prefix a SensorThings error
    body (a path with a control character matches no route at all), elsewhere FastAPI's own."""
    from fastapi.exception_handlers import http_exception_handler  # noqa: PLC0415
    from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: PLC0415

    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and request.url.path.startswith(PREFIX + "/"):
        return _error(404, f"no SensorThings resource at {request.url.path[:200]!r}")
    return await http_exception_handler(request, exc)
