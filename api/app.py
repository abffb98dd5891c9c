"""The FastAPI application: routers, the connection pool, readable 422s, and the guards against starvation.

Reads and writes have their own pools (api/deps.py: DbDep, PrimaryDbDep): with
CITYSENSE_DATABASE_READ_URL every read, health included, goes to that streaming replica and
only admin writes to the primary; without it the two pools are one.

Guards, each a setting: every pooled query has a statement timeout (503 when hit), a pooled
connection is checked before use (a database restart costs no 500), health has its own
connection, exports are bounded, read routes are rate-limited per client, and CORS opens
the read routes (never admin) to other sites.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.cors import OpenDataCors, parse_origins
from api.errors import install_database_error_handlers
from api.exports import ExportSlots
from api.health_probe import HealthProbe
from api.rate_limit import ClientRateLimiter
from api.response_cache import TtlCache
from api.routes import (
    admin,
    aqi,
    devices,
    export,
    flags,
    health,
    latest,
    map_data,
    map_page,
    parking,
    readings,
    series,
    stream,
)
from api.routes.alerts import router as alerts_router
from api.routes.calibration_admin import router as calibration_admin_router
from api.routes.lass_feed import router as lass_feed_router
from api.routes.sensorthings import not_found_anywhere
from api.routes.sensorthings import router as sensorthings_router
from calibration.aqi import get_scale
from contracts.settings import Settings, get_settings
from contracts.urls import redact_url
from contracts.version import __version__
from ingest.backend import SchemaMissing, recorded_backend_async

log = logging.getLogger(__name__)


async def _backend(pool: AsyncConnectionPool) -> str | None:
    """The backend recorded at the first migration (None: schema missing), never guessed from
    the extension list: a fallback schema in a database that later got the extension stays
    plain PostgreSQL (its aggregates are materialized views, not continuous ones)."""
    async with pool.connection() as conn:
        return await recorded_backend_async(conn)


def _explain(errors: list[Any]) -> str:
    """One sentence per bad parameter, e.g. "query parameter 'limit': must be <= 100000"; an item of a
    list parameter is named by the parameter and its position ("query parameter 'hourly', item 2")."""
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ())]
        if len(loc) < 2:
            parts.append(f"request: {err.get('msg', 'invalid')}")
            continue
        name = ".".join(part for part in loc[1:] if not part.isdigit())
        items = "".join(f", item {int(part) + 1}" for part in loc[2:] if part.isdigit())
        where = f"{loc[0]} parameter '{name}'{items}"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """The pydantic errors without their `input` and `ctx` (they may hold bytes, NaN or a NUL: not JSON)."""
    return [{"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
            for err in errors]


PRIMARY_POOL_SIZE = 4
"""Connections to the primary when reads go to a replica: only admin writes use them, rare and short."""


def open_pool(settings: Settings, url: str | None = None, *, max_size: int | None = None,
              name: str = "citysense-api") -> AsyncConnectionPool:
    """A query pool on `url` (default: where the API reads): a statement timeout on every
    connection, each checked before a request gets it."""
    return AsyncConnectionPool(
        url or settings.api_read_url, min_size=min(2, max_size or 2), max_size=max_size or settings.api_pool_size,
        open=False, timeout=settings.api_pool_timeout_s, check=AsyncConnectionPool.check_connection,
        kwargs={"options": f"-c statement_timeout={settings.api_statement_timeout_ms}", "application_name": name},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    get_scale(settings.aqi_default_scale)  # an unknown CITYSENSE_AQI_DEFAULT_SCALE fails here, with the known keys

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        read_pool = open_pool(settings)
        primary_pool = read_pool
        if settings.database_read_url:
            primary_pool = open_pool(settings, settings.database_url, max_size=PRIMARY_POOL_SIZE,
                                     name="citysense-api-writes")
        try:
            await read_pool.open(wait=True, timeout=30)
            if primary_pool is not read_pool:
                await primary_pool.open(wait=True, timeout=30)
            app.state.read_pool, app.state.primary_pool = read_pool, primary_pool
            app.state.backend = await _backend(read_pool)
            if app.state.backend is None:  # served as 503s saying so until the schema exists
                log.warning("event=schema_missing hint=%r", str(SchemaMissing()))
            app.state.health_probe = HealthProbe(settings.api_read_url)
            log.info("event=api_started database=%s reads=%s backend=%s", redact_url(settings.database_url),
                     redact_url(settings.api_read_url) if settings.database_read_url else "primary",
                     app.state.backend)
            try:
                yield
            finally:
                await app.state.health_probe.close()
        finally:
            await read_pool.close()
            if primary_pool is not read_pool:
                await primary_pool.close()

    app = FastAPIOffline(  # /docs and /redoc with their scripts, styles and favicon served from the package: no CDN
        title="citysense API",
        version=__version__,
        description="Open data from school air boxes and street parking sensors. "
        "Every value comes with its raw reading, quality flags and the calibration applied.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.latest_rows = TtlCache[list[tuple[Any, ...]]](settings.api_latest_cache_s, max_entries=64)
    app.state.latest_cache = TtlCache[bytes](settings.api_latest_cache_s, max_entries=256)
    app.state.export_slots = ExportSlots(settings.api_max_concurrent_exports)
    app.state.rate_limiter = (
        ClientRateLimiter(settings.api_rate_limit_per_s, settings.api_rate_limit_burst)
        if settings.api_rate_limit_per_s > 0 else None
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        return JSONResponse(
            {"detail": _explain(errors), "errors": jsonable_encoder(_validation_errors(errors))}, status_code=422
        )

    install_database_error_handlers(app, settings)
    for module in (health, devices, admin, latest, readings, series, export, parking, stream, aqi, flags, map_page):
        app.include_router(module.router)
    app.include_router(sensorthings_router)
    app.add_exception_handler(StarletteHTTPException, not_found_anywhere)
    app.include_router(lass_feed_router)
    app.include_router(alerts_router)
    app.include_router(calibration_admin_router)
    app.include_router(map_data.router)
    app.mount("/static", map_page.static_files(), name="static")
    origins = parse_origins(settings.api_cors_origins)
    if origins:
        admin_routes = [*admin.router.routes, *calibration_admin_router.routes]
        app.add_middleware(OpenDataCors, origins=origins, admin_routes=admin_routes)
    return app
