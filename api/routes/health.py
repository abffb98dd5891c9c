"""Is the service usable, on which backend, and how fresh is the data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health", summary="Database reachable, backend, newest reading age")
async def health(request: Request) -> JSONResponse:
    body: dict[str, Any] = {"status": "ok", "database": "ok", "backend": request.app.state.backend}
    try:
        async with request.app.state.pool.connection(timeout=3) as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM now() - max(time)) FROM readings WHERE time > now() - interval '1 day'"
            )
            row = await cur.fetchone()
            age = row[0] if row else None
            body["newest_reading_age_s"] = None if age is None else round(float(age), 1)
            cur = await conn.execute("SELECT count(*) FROM devices WHERE retired_at IS NULL")
            n = await cur.fetchone()
            body["devices"] = n[0] if n else 0
    except Exception as exc:  # noqa: BLE001 - health reports any failure instead of raising
        body.update(status="degraded", database=f"unreachable: {type(exc).__name__}")
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
