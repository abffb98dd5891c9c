"""The published error body and the database failures that become a 503 with a sentence.

Every error the API answers has the shape of `ErrorOut`, and every status code a route can
answer is listed in its OpenAPI `responses=` (built by `error_responses`), so a client and
schemathesis can hold the API to its schema. A database that is slow, busy or down is the
service being unavailable (503 with Retry-After), never a server error (500).
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout, TooManyRequests
from pydantic import BaseModel, Field

from contracts.settings import Settings
from ingest.backend import SchemaMissing

RETRY_AFTER_S = 5
"""What a 503 asks the client to wait: about one statement timeout."""


class ErrorOut(BaseModel):
    """Every error the API answers: a sentence a person can act on, and for a 422 the bad parameters."""

    detail: str = Field(description="What went wrong and what to do about it")
    errors: list[dict[str, Any]] | None = Field(None, description="For a 422: one entry per bad parameter")


_WHY = {
    400: "The request body could not be parsed (not JSON)",
    401: "Missing or wrong admin bearer token",
    403: "Admin endpoints are off (CITYSENSE_ADMIN_TOKEN not set)",
    404: "No such resource",
    409: "The device is registered already: send `rotate_token: true` to issue a new token",
    422: "A parameter is invalid: `detail` says which and why",
    429: "Too many requests from this client or too many exports at once: retry after `Retry-After` seconds",
    503: "The database is unreachable, busy or too slow for this query: retry after `Retry-After` seconds",
}

def retry_after_header() -> dict[str, Any]:
    """The OpenAPI `headers` entry of a 429 or 503."""
    return {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these status codes, each with the ErrorOut body."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorOut, "description": _WHY[code]}
        if code in (429, 503):
            entry["headers"] = retry_after_header()
        out[code] = entry
    return out


READ_ERRORS = error_responses(422, 429, 503)
"""What any read route can answer besides its success: a bad parameter, throttling, a database in trouble."""


def unavailable(detail: str, retry_after_s: int = RETRY_AFTER_S) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(retry_after_s)})


def install_database_error_handlers(app: FastAPI, settings: Settings) -> None:
    """Statement timeouts, a full pool and a lost database answer 503 with the reason."""

    async def statement_timeout(_: Request, __: Exception) -> JSONResponse:
        return unavailable(
            f"the query ran longer than {settings.api_statement_timeout_ms} ms and was cancelled "
            "(CITYSENSE_API_STATEMENT_TIMEOUT_MS): ask for a shorter time range, or retry later"
        )

    async def pool_busy(_: Request, __: Exception) -> JSONResponse:
        return unavailable(
            f"all {settings.api_pool_size} database connections stayed busy for "
            f"{settings.api_pool_timeout_s:g} s: the service is overloaded, retry later"
        )

    async def database_down(_: Request, __: Exception) -> JSONResponse:
        return unavailable("the database is unreachable right now: retry in a few seconds")

    async def schema_missing(_: Request, __: Exception) -> JSONResponse:
        return unavailable(str(SchemaMissing()), retry_after_s=60)

    app.add_exception_handler(psycopg.errors.QueryCanceled, statement_timeout)
    app.add_exception_handler(PoolTimeout, pool_busy)
    app.add_exception_handler(TooManyRequests, pool_busy)
    app.add_exception_handler(psycopg.OperationalError, database_down)
    app.add_exception_handler(psycopg.errors.UndefinedTable, schema_missing)  # a database never migrated
