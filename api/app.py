"""The FastAPI application: routers, the connection pool, readable 422s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from api.response_cache import TtlCache
from api.routes import admin, aqi, devices, export, flags, health, latest, map_page, parking, readings, series, stream
from api.routes.lass_feed import router as lass_feed_router
from api.routes.sensorthings import router as sensorthings_router
from contracts.settings import Settings, get_settings
from contracts.version import __version__
from ingest.backend import recorded_backend_async


async def _backend(pool: AsyncConnectionPool) -> str | None:
    """The backend recorded at the first migration (None: schema missing), never guessed from
    the extension list: a fallback schema in a database that later got the extension stays
    plain PostgreSQL (its aggregates are materialized views, not continuous ones)."""
    async with pool.connection() as conn:
        return await recorded_backend_async(conn)


def _explain(errors: list[Any]) -> str:
    """One sentence per bad parameter, e.g. "query parameter 'limit': must be <= 100000"."""
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ())]
        where = f"{loc[0]} parameter '{loc[-1]}'" if len(loc) >= 2 else "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(settings.database_url, min_size=2, max_size=10, open=False)
        await pool.open(wait=True, timeout=30)
        app.state.pool = pool
        app.state.backend = await _backend(pool)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="citysense API",
        version=__version__,
        description="Open data from school air boxes and street parking sensors. "
        "Every value comes with its raw reading, quality flags and the calibration applied.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.latest_cache = TtlCache(settings.api_latest_cache_s)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"detail": _explain(list(exc.errors())), "errors": jsonable_encoder(exc.errors())}, status_code=422
        )

    for module in (health, devices, admin, latest, readings, series, export, parking, stream, aqi, flags, map_page):
        app.include_router(module.router)
    app.include_router(sensorthings_router)
    app.include_router(lass_feed_router)
    return app
