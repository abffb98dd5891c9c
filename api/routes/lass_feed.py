"""`/lass/...`: the LASS open-data feeds, so existing LASS consumers switch by changing a URL.

`last-all-airbox.json` (and `.json.gz`): the envelope `{source, num_of_records, feeds, version,
descriptions}` with one feed per air box, its newest message: `s_d0 s_d1 s_d2 s_t0 s_h0` are
the raw values the box sent (the field names are `gateway.codecs.lass.KNOWN_SENSOR_KEYS`, the
same rule our LASS decoder reads them by), `c_d0` the calibrated PM2.5 and `c_d0_method` the
calibration model's type (`none` when the reading carries no calibration).
`device/{device_id}/history.json`: the LASS history shape, `feeds: [{<app>: [{<timestamp>: {...}}]}]`.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from api.deps import DbDep
from api.errors import READ_ERRORS, error_responses
from api.params import DeviceIdInPath, Timestamp, time_range
from api.rate_limit import RateLimited
from gateway.codecs.lass import KNOWN_SENSOR_KEYS

router = APIRouter(prefix="/lass", tags=["lass"], dependencies=[RateLimited], responses=READ_ERRORS)

SOURCE = "citysense open data (LASS feed format)"
APP = "citysense"
FIELD_OF_METRIC = {metric: key for key, metric in KNOWN_SENSOR_KEYS.items()}
METRICS = sorted(FIELD_OF_METRIC)
MAX_HISTORY = timedelta(days=31)
DESCRIPTIONS = {
    "s_d0": "PM2.5 (µg/m³) as measured by the box, uncalibrated",
    "s_d1": "PM10 (µg/m³) as measured", "s_d2": "PM1 (µg/m³) as measured",
    "s_t0": "temperature (°C) as measured", "s_h0": "relative humidity (%) as measured",
    "c_d0": "PM2.5 (µg/m³) after citysense calibration; null when a quality flag voids it",
    "c_d0_method": "calibration model type applied to c_d0 ('none': no calibration)",
    "timestamp": "UTC time of the reading, ISO 8601", "date": "UTC date", "time": "UTC time of day",
    "area": "district and city of the device, where known",
}

# Newest PM2.5 per box (one probe of the unique index), the other fields of the same message
# (same time), and its calibration's model type.
_LAST_ALL = """
SELECT d.device_id, coalesce(d.site, d.school, d.name, d.device_id) AS site_name, d.lat, d.lon,
       concat_ws(', ', d.district, d.city) AS area, a.time, a.value AS c_d0,
       coalesce(c.model ->> 'type', 'none') AS c_d0_method, o.raws
FROM devices d
CROSS JOIN LATERAL (
  SELECT time, value, calibration_id FROM readings
  WHERE device_id = d.device_id AND metric = 'pm25' AND time > now() - make_interval(secs => %(max_age)s)
        AND time <= now() + interval '10 minutes'
  ORDER BY time DESC LIMIT 1
) a
CROSS JOIN LATERAL (
  SELECT jsonb_object_agg(r.metric, r.raw) AS raws FROM readings r
  WHERE r.device_id = d.device_id AND r.metric = ANY(%(metrics)s) AND r.time = a.time
) o
LEFT JOIN calibrations c ON c.id = a.calibration_id
WHERE d.retired_at IS NULL AND d.kind IN ('airbox', 'lass')
ORDER BY d.device_id
"""

_HISTORY = """
SELECT r.time, jsonb_object_agg(r.metric, r.raw) AS raws,
       max(r.value) FILTER (WHERE r.metric = 'pm25') AS c_d0,
       max(coalesce(c.model ->> 'type', 'none')) FILTER (WHERE r.metric = 'pm25') AS c_d0_method
FROM readings r LEFT JOIN calibrations c ON c.id = r.calibration_id
WHERE r.device_id = %(device)s AND r.metric = ANY(%(metrics)s) AND r.time >= %(start)s AND r.time < %(end)s
GROUP BY r.time ORDER BY r.time
"""


def _fields(time: datetime, raws: dict[str, Any] | None, c_d0: float | None, method: str | None) -> dict[str, Any]:
    t = time.astimezone(UTC)
    fields: dict[str, Any] = {FIELD_OF_METRIC[m]: v for m, v in sorted((raws or {}).items()) if v is not None}
    fields.update(
        timestamp=t.strftime("%Y-%m-%dT%H:%M:%SZ"), date=t.strftime("%Y-%m-%d"), time=t.strftime("%H:%M:%S"),
        c_d0=c_d0, c_d0_method=method or "none",
    )
    return fields


def last_all_airbox(rows: list[tuple[Any, ...]], now: datetime) -> dict[str, Any]:
    feeds = []
    for device_id, site_name, lat, lon, area, time, c_d0, method, raws in rows:
        feed = {"device_id": device_id, "SiteName": site_name, "gps_lat": lat, "gps_lon": lon, "app": APP,
                "area": area or None}
        feed.update(_fields(time, raws, c_d0, method))
        feeds.append(feed)
    return {
        "source": SOURCE, "num_of_records": len(feeds), "feeds": feeds,
        "version": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "descriptions": DESCRIPTIONS,
    }


async def _last_all_body(db: DbDep, max_age_s: int) -> bytes:
    cur = await db.execute(_LAST_ALL.encode(), {"max_age": max_age_s, "metrics": METRICS})
    return orjson.dumps(last_all_airbox(await cur.fetchall(), datetime.now(UTC)))


MaxAge = Query(3 * 3600, ge=60, le=30 * 86400, description="Leave out boxes silent for longer")


@router.get("/last-all-airbox.json", summary="Newest message of every air box, LASS envelope")
async def last_all(db: DbDep, max_age_s: int = MaxAge) -> Response:
    return Response(await _last_all_body(db, max_age_s), media_type="application/json")


@router.get(
    "/last-all-airbox.json.gz", summary="The same feed, gzip-compressed as LASS serves it",
    responses={200: {"content": {"application/gzip": {}}, "description": "The feed as gzip"}},
)
async def last_all_gz(db: DbDep, max_age_s: int = MaxAge) -> Response:
    body = gzip.compress(await _last_all_body(db, max_age_s), compresslevel=6)
    return Response(body, media_type="application/gzip",
                    headers={"Content-Disposition": 'attachment; filename="last-all-airbox.json.gz"'})


@router.get(
    "/device/{device_id}/history.json", summary="One box's messages in a time range, LASS history shape",
    responses=error_responses(404),
)
async def history(
    db: DbDep,
    device_id: DeviceIdInPath,
    start: Timestamp | None = Query(None, description="ISO 8601, 1970-2199; default end - 1 day"),
    end: Timestamp | None = Query(None, description="ISO 8601, 1970-2199; default now"),
) -> Response:
    start, end = time_range(start, end, timedelta(days=1))
    if end - start > MAX_HISTORY:
        raise HTTPException(status_code=422, detail="LASS history is served 31 days at a time; narrow start/end")
    cur = await db.execute(_HISTORY.encode(), {"device": device_id, "metrics": METRICS, "start": start, "end": end})
    rows = await cur.fetchall()
    if not rows:
        found = await (await db.execute(b"SELECT 1 FROM devices WHERE device_id = %s", (device_id,))).fetchone()
        if found is None:
            raise HTTPException(status_code=404, detail=f"no device {device_id!r}")
    records = [{f["timestamp"]: f} for f in (_fields(t, raws, c, m) for t, raws, c, m in rows)]
    body = {"source": SOURCE, "device_id": device_id, "num_of_records": len(records), "feeds": [{APP: records}]}
    return Response(orjson.dumps(body), media_type="application/json")
