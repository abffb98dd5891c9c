"""Is the service usable, on which backend, and how fresh is the data.

Answered from the health probe's own connection (api/health_probe.py), never the pool,
so it says the truth within a second even while the pool is exhausted or a table is locked;
the pool's own state is reported beside it, and so is the replica the API reads from, if any
(standby or not, replay lag).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import read_pool
from api.errors import RETRY_AFTER_S, error_responses, retry_after_header
from api.health_probe import HealthProbe, HealthProbeError
from api.rate_limit import RateLimited

router = APIRouter(prefix="/v1", tags=["health"], dependencies=[RateLimited])


class PoolOut(BaseModel):
    size: int = Field(description="Connections open in the query pool")
    available: int = Field(description="Of them, idle")
    waiting: int = Field(description="Requests waiting for a connection")


class ReplicaOut(BaseModel):
    read_url_in_use: bool = Field(description="Reads go to CITYSENSE_DATABASE_READ_URL (a replica), not the primary")
    in_recovery: bool | None = Field(None, description="The server the API reads from is a standby (pg_is_in_recovery)")
    lag_s: float | None = Field(
        None, description="Standby only: 0 when all WAL received is replayed, else now - last replayed commit"
    )
    last_replay_age_s: float | None = Field(
        None, description="Standby only: now - pg_last_xact_replay_timestamp() (grows while the primary is idle)"
    )


class HealthOut(BaseModel):
    status: str = Field(description="'ok', or 'degraded' with the reason in `database`")
    database: str
    backend: str = Field(description="'timescaledb' or 'postgresql'")
    newest_reading_age_s: float | None = None
    devices: int | None = None
    pool: PoolOut
    replica: ReplicaOut


@router.get(
    "/health", summary="Database reachable, backend, newest reading age (answers within 1 s)",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "The database is unreachable, locked or too slow",
                     "headers": retry_after_header()},
               **error_responses(429)},
)
async def health(request: Request) -> JSONResponse:
    stats = read_pool(request).get_stats()
    body: dict[str, Any] = {
        "status": "ok", "database": "ok", "backend": request.app.state.backend,
        "pool": {"size": stats.get("pool_size", 0), "available": stats.get("pool_available", 0),
                 "waiting": stats.get("requests_waiting", 0)},
        "replica": {"read_url_in_use": bool(request.app.state.settings.database_read_url)},
    }
    probe: HealthProbe = request.app.state.health_probe
    try:
        found = await probe.check()
    except HealthProbeError as exc:
        body.update(status="degraded", database=str(exc))
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    body["replica"].update(found.pop("standby"))
    body.update(found)
    return JSONResponse(body)
