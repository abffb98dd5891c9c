"""The device registry: list, one device and its real-time AQI (registration is in admin.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from api.deps import DbDep
from api.device_aqi import realtime_aqi_of_devices
from api.errors import READ_ERRORS, error_responses
from api.params import NO_NUL, DeviceIdInPath, Limit, Page, ScaleDep
from api.rate_limit import RateLimited
from api.routes.aqi import CategoryOut, category_out

router = APIRouter(prefix="/v1/devices", tags=["devices"], dependencies=[RateLimited], responses=READ_ERRORS)

_COLUMNS = (
    "d.device_id, d.kind, d.name, d.site, d.school, d.lat, d.lon, d.sensor_type, d.registered, d.created_at, "
    "s.online, s.fw, s.rssi, s.queued, s.updated_at AS status_at, "
    "s.baseline_age_s, s.detector_confidence, s.needs_relearning"
)
"""A parking sensor's last three: what its detector says of itself (firmware README, "Topics"): seconds
since it last saw the empty bay, how clearly the field sits at the reported state (0..1) and whether its
baseline needs confirming or re-learning; null for air boxes and while offline."""


@router.get("", summary="Devices, with their last reported status")
async def list_devices(
    db: DbDep,
    kind: str | None = Query(None, pattern="^(airbox|parking|lass)$"),
    school: str | None = Query(None, max_length=200, pattern=NO_NUL),
    limit: Limit = 1000,
    page: Page = 1,
) -> dict[str, Any]:
    where, args = ["d.retired_at IS NULL"], []
    if kind:
        where.append("d.kind = %s")
        args.append(kind)
    if school:
        where.append("d.school = %s")
        args.append(school)
    sql = (
        f"SELECT {_COLUMNS}, count(*) OVER () AS found FROM devices d LEFT JOIN device_status s USING (device_id) "
        f"WHERE {' AND '.join(where)} ORDER BY d.device_id LIMIT %s OFFSET %s"
    )
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.encode(), [*args, limit, (page - 1) * limit])
        rows = await cur.fetchall()
    found = rows[0].pop("found") if rows else 0
    for r in rows[1:]:
        r.pop("found")
    return {"meta": {"found": found, "page": page, "limit": limit}, "results": rows}


@router.get("/{device_id}", summary="One device", responses=error_responses(404))
async def get_device(db: DbDep, device_id: DeviceIdInPath) -> dict[str, Any]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM devices d LEFT JOIN device_status s USING (device_id) "
            "WHERE d.device_id = %s",
            [device_id],
        )
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no device {device_id!r}")
    return row


class HourOut(BaseModel):
    """One hour the real-time rule looks at: the start of the UTC hour and its mean calibrated PM2.5."""

    time: datetime
    pm25: float | None = Field(description="Mean calibrated PM2.5 of the hour, µg/m³; null: no reading that hour")


class DeviceAqiOut(BaseModel):
    """A device's real-time AQI, or the reason there is none, with the hours it comes from."""

    device_id: str
    scale: str
    aqi: int | None = Field(description="The index; null when the hours are too few for the scale's rule")
    category: CategoryOut | None
    color: str | None = Field(description="The category's display colour (hex RGB)")
    concentration: float | None = Field(description="Real-time PM2.5 (NowCast or MOENV moving average), µg/m³")
    concentration_used: float | None = Field(description="The concentration after the scale's rounding rule")
    beyond_index: bool | None
    rule: str = Field(description="The scale's real-time rule")
    reason: str | None = Field(description="Why there is no index (null when there is one)")
    hours: list[HourOut] = Field(description="The 12 complete hours before now, most recent first")
    hours_used: int = Field(description="Of them, hours with data")


@router.get(
    "/{device_id}/aqi", responses=error_responses(404),
    summary="A device's real-time AQI from its stored hourly PM2.5 (MOENV 12 h/4 h rule, US EPA NowCast)",
)
async def device_aqi(request: Request, db: DbDep, device_id: DeviceIdInPath, scale: ScaleDep) -> DeviceAqiOut:
    found = await realtime_aqi_of_devices(db, request.app.state.backend, scale, [device_id])
    if device_id not in found:
        raise HTTPException(status_code=404, detail=f"no device {device_id!r}")
    one = found[device_id]
    result = one.result
    return DeviceAqiOut(
        device_id=device_id,
        scale=scale.key,
        aqi=None if result is None else result.aqi,
        category=None if result is None else category_out(result),
        color=None if result is None else result.category.color,
        concentration=None if result is None else result.concentration,
        concentration_used=None if result is None else result.concentration_used,
        beyond_index=None if result is None else result.beyond_index,
        rule=scale.realtime,
        reason=one.insufficient_reason,
        hours=[HourOut(time=hour.time, pm25=hour.pm25) for hour in one.hours],
        hours_used=len(one.hours_used),
    )
