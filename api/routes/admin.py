"""Admin: register devices (issuing their MQTT token) and read dead letters."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from fastapi import APIRouter, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from api.deps import AdminDep, DbDep
from api.errors import error_responses
from api.params import NO_NUL
from ingest.device_store import token_hash

router = APIRouter(prefix="/v1", tags=["admin"], responses=error_responses(400, 401, 403, 422, 503))


class DeviceIn(BaseModel):
    device_id: str = Field(pattern=r"^[a-z0-9-]{3,64}$", examples=["tp-school-0042"])
    kind: Literal["airbox", "parking"] = "airbox"
    name: str | None = Field(None, max_length=200, pattern=NO_NUL)
    school: str | None = Field(None, max_length=200, pattern=NO_NUL)
    site: str | None = Field(None, max_length=200, pattern=NO_NUL)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    sensor_type: str | None = Field("pms5003", max_length=40, pattern=NO_NUL)
    owner: str | None = Field(None, max_length=200, pattern=NO_NUL)


@router.post("/devices", status_code=201, summary="Register a device; the MQTT password is returned once")
async def register(device: DeviceIn, db: DbDep, _: AdminDep) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    await db.execute(
        "INSERT INTO devices (device_id, kind, name, school, site, lat, lon, sensor_type, owner, token_hash, "
        "registered) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true) ON CONFLICT (device_id) DO UPDATE SET "
        "kind = EXCLUDED.kind, name = EXCLUDED.name, school = EXCLUDED.school, site = EXCLUDED.site, "
        "lat = EXCLUDED.lat, lon = EXCLUDED.lon, sensor_type = EXCLUDED.sensor_type, owner = EXCLUDED.owner, "
        "token_hash = EXCLUDED.token_hash, registered = true, retired_at = NULL",
        [device.device_id, device.kind, device.name, device.school, device.site, device.lat, device.lon,
         device.sensor_type, device.owner, token_hash(token)],
    )
    return {
        "device_id": device.device_id,
        "mqtt": {"username": device.device_id, "password": token,
                 "topic": f"citysense/v1/{device.kind}/{device.device_id}/up"},
    }


@router.get("/rejected", summary="Dead letters: messages the gateway refused, with the reason")
async def rejected(
    db: DbDep, _: AdminDep, limit: int = Query(100, ge=1, le=10_000),
    reason: str | None = Query(None, max_length=200, pattern=NO_NUL),
) -> dict[str, Any]:
    where, args = "", []
    if reason:
        where = "WHERE reason ILIKE %s"
        args.append(f"%{reason}%")
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT received_at, topic, reason, length(payload) AS bytes, "
            f"encode(substring(payload FROM 1 FOR 200), 'escape') AS payload_start "
            f"FROM rejected_messages {where} ORDER BY received_at DESC LIMIT %s".encode(),
            [*args, limit],
        )
        rows = await cur.fetchall()
    return {"meta": {"found": len(rows), "limit": limit}, "results": rows}
