"""What the /map and /schools/{school} pages show: every air box with the server's AQI, a school's summary.

The pages do no AQI arithmetic: each device's real-time index comes from
`api.device_aqi.realtime_aqi_of_devices` (the same function as the device AQI endpoint), with
the colours to draw it (api/aqi_display.py). A school's "now" is its worst box: the index a
teacher must act on when one of the school's boxes reads high.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response
from psycopg import AsyncConnection

from alerts.store import school_flag_row
from api.aqi_display import aqi_display
from api.deps import DbDep, read_pool
from api.device_aqi import realtime_aqi_of_devices
from api.errors import READ_ERRORS, error_responses
from api.params import NO_NUL, ScaleDep
from api.rate_limit import RateLimited
from api.response_cache import TtlCache
from calibration.aqi import AqiScale
from contracts.metrics import METRICS

router = APIRouter(prefix="/v1", tags=["map"], dependencies=[RateLimited], responses=READ_ERRORS)

MAP_MAX_AGE = timedelta(hours=3)
"""A box silent for longer is not on the map (as /v1/latest's default)."""

# the newest PM2.5 of each air box (latest_readings, kept by the batch writer: one index range,
# as /v1/latest), with its status
_BOXES = """
SELECT d.device_id, d.kind, d.name, d.school, d.lat, d.lon, r.time, r.value, r.raw, r.flags,
       s.fw, s.online, s.updated_at AS status_at
FROM devices d
LEFT JOIN device_status s USING (device_id)
JOIN latest_readings r ON r.device_id = d.device_id AND r.metric = 'pm25'
WHERE d.retired_at IS NULL AND d.kind <> 'parking' AND d.lat IS NOT NULL
      AND r.time > now() - %(max_age)s::interval AND r.time <= now() + interval '10 minutes'
      AND (%(school)s::text IS NULL OR lower(d.school) = lower(%(school)s::text))
ORDER BY d.device_id
"""

# hourly means of calibrated PM2.5: per device-hour first, then across devices, so a box that
# reports twice as often does not weigh twice; the rule of /v1/series for where hours come from
_HOURLY_RAW = """
SELECT date_bin(INTERVAL '1 hour', r.time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, r.device_id,
       avg(r.value) AS avg
FROM readings r JOIN devices d USING (device_id)
WHERE r.metric = 'pm25' AND r.time >= %(start)s AND r.time < %(end)s AND d.kind <> 'parking'
      AND d.retired_at IS NULL AND (%(school)s::text IS NULL OR lower(d.school) = lower(%(school)s::text))
GROUP BY 1, 2
"""
_HOURLY_AGGREGATE = """
SELECT h.bucket, h.device_id, h.avg
FROM readings_1h h JOIN devices d USING (device_id)
WHERE h.metric = 'pm25' AND h.bucket >= %(start)s AND h.bucket < %(end)s AND d.kind <> 'parking'
      AND d.retired_at IS NULL AND (%(school)s::text IS NULL OR lower(d.school) = lower(%(school)s::text))
"""
_ACROSS_DEVICES = "SELECT bucket, avg(avg) FROM ({per_device}) per_device GROUP BY bucket ORDER BY bucket"

SchoolInPath = Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL, description="School name")]


async def _boxes(conn: AsyncConnection[Any], backend: str | None, scale: AqiScale,
                 school: str | None) -> list[dict[str, Any]]:
    """Each air box with its newest PM2.5, status and the server's real-time AQI on `scale`."""
    async with conn.cursor() as cur:
        await cur.execute(_BOXES.encode(), {"max_age": MAP_MAX_AGE, "school": school})
        rows = await cur.fetchall()
    indices = await realtime_aqi_of_devices(conn, backend, scale, [r[0] for r in rows]) if rows else {}
    decimals = METRICS["pm25"].decimals
    boxes = []
    for device_id, kind, name, school_name, lat, lon, t, value, raw, flags, fw, online, status_at in rows:
        index = indices.get(device_id)
        boxes.append({
            "device_id": device_id, "kind": kind, "name": name, "school": school_name, "lat": lat, "lon": lon,
            "time": t, "pm25": None if value is None else round(value, decimals),
            "pm25_raw": None if raw is None else round(raw, decimals), "flags": flags, "fw": fw,
            "online": online, "status_at": status_at,
            "aqi": aqi_display(index.result if index else None),
            "aqi_missing": index.insufficient_reason if index else "no hourly PM2.5",
        })
    return boxes


async def _hourly(conn: AsyncConnection[Any], backend: str | None, school: str | None, start: datetime,
                  end: datetime) -> dict[str, list[Any]]:
    """Hourly mean PM2.5 over the boxes of `school` (None: the whole city), for a chart."""
    per_device = _HOURLY_AGGREGATE if backend == "timescaledb" else _HOURLY_RAW
    async with conn.cursor() as cur:
        await cur.execute(_ACROSS_DEVICES.format(per_device=per_device).encode(),
                          {"start": start, "end": end, "school": school})
        rows = await cur.fetchall()
    places = METRICS["pm25"].decimals + 1
    return {"time": [int(b.timestamp()) for b, _ in rows],
            "pm25": [None if v is None else round(float(v), places) for _, v in rows]}


@router.get("/map/devices", summary="Every air box with its newest PM2.5, status and real-time AQI (for /map)")
async def map_devices(request: Request, scale: ScaleDep) -> Response:
    """Cached like /v1/latest (CITYSENSE_API_LATEST_CACHE_S), per scale: a classroom of tabs costs one query."""
    cache: TtlCache[bytes] = request.app.state.latest_cache
    pool = read_pool(request)

    async def compute() -> tuple[bytes, float]:
        read_at = time.monotonic()
        async with pool.connection() as conn:
            boxes = await _boxes(conn, request.app.state.backend, scale, None)
        body = {"meta": {"scale": scale.key, "found": len(boxes), "generated_at": datetime.now(UTC)},
                "results": boxes}
        return orjson.dumps(body), read_at

    body, age = await cache.get_or_compute(("map-devices", scale.key), compute)
    return Response(content=body, media_type="application/json", headers={"Age": str(int(age))})


@router.get("/schools/{school}", summary="A school's boxes, its AQI now, a week and a day against the city",
            responses=error_responses(404))
async def school_summary(request: Request, db: DbDep, school: SchoolInPath, scale: ScaleDep) -> dict[str, Any]:
    cur = await db.execute("SELECT min(school) FROM devices WHERE lower(school) = lower(%s) AND retired_at IS NULL",
                           [school])
    found = await cur.fetchone()
    if found is None or found[0] is None:
        raise HTTPException(status_code=404, detail=f"no devices registered for school {school!r}")
    backend = request.app.state.backend
    boxes = await _boxes(db, backend, scale, school)
    rated = [b for b in boxes if b["aqi"] is not None]
    worst = max(rated, key=lambda b: b["aqi"]["aqi"]) if rated else None
    end = datetime.now(UTC)
    return {
        "school": found[0], "scale": scale.key,
        "now": None if worst is None else {**worst["aqi"], "device_id": worst["device_id"]},
        # the colour the school's flag light shows (alerts/school_air.py: the median of its boxes, held
        # against flapping), beside `now` (the highest box), so page and light never seem to disagree
        "flag": await school_flag_row(db, found[0]),
        "devices": boxes,
        "week": await _hourly(db, backend, school, end - timedelta(days=7), end),
        "day": {"school": await _hourly(db, backend, school, end - timedelta(days=1), end),
                "city": await _hourly(db, backend, None, end - timedelta(days=1), end)},
    }
