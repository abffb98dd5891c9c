"""The device registry: list and one device (registration is in admin.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from psycopg.rows import dict_row

from api.deps import DbDep
from api.errors import READ_ERRORS, error_responses
from api.params import NO_NUL, DeviceIdInPath, Limit, Page
from api.rate_limit import RateLimited

router = APIRouter(prefix="/v1/devices", tags=["devices"], dependencies=[RateLimited], responses=READ_ERRORS)

_COLUMNS = (
    "d.device_id, d.kind, d.name, d.site, d.school, d.lat, d.lon, d.sensor_type, d.registered, d.created_at, "
    "s.online, s.fw, s.rssi, s.queued, s.updated_at AS status_at"
)


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
