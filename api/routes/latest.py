"""The city map: the newest value of one metric per device, as GeoJSON.

Cached in two bounded steps (api/response_cache.py): the newest row of every device within
the longest allowed age, once per metric and TTL; and the GeoJSON body per (metric, max_age_s),
cut from those rows. Asking with a new max_age_s costs a filter in memory, never a query.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import read_pool
from api.errors import READ_ERRORS
from api.params import Metric, check_metric
from api.rate_limit import RateLimited
from api.response_cache import TtlCache

router = APIRouter(prefix="/v1", tags=["latest"], dependencies=[RateLimited], responses=READ_ERRORS)

MAX_AGE_S = 30 * 86400
"""The longest `max_age_s` a client may ask: the rows are read once for it and cut per request."""

# The newest row of every series is kept by the batch writer in latest_readings (migration
# 0013, in the transaction that stores the readings): one index scan of devices x metrics rows,
# however long the history, where a LATERAL probe per device into readings cost ~43 ms p95 for
# 1,000 devices. Rows, not JSON: building the GeoJSON with orjson here costs ~4 ms for 1,000
# devices, where json_build_object per feature in PostgreSQL took ~15 ms (bench api).
_LATEST = """
SELECT d.device_id, d.kind, d.name, d.school, d.lat, d.lon, r.time, r.value, r.raw, r.flags, r.calibration_id
FROM devices d
JOIN latest_readings r ON r.device_id = d.device_id AND r.metric = %(metric)s
WHERE d.retired_at IS NULL AND r.time > now() - make_interval(secs => %(max_age)s)
  AND r.time <= now() + interval '10 minutes'
ORDER BY d.device_id
"""


def feature_collection(metric: str, rows: list[tuple[Any, ...]]) -> bytes:
    features = [
        {
            "type": "Feature",
            "id": device_id,
            "geometry": None if lat is None else {"type": "Point", "coordinates": [lon, lat]},
            "properties": {
                "device_id": device_id, "kind": kind, "name": name, "school": school, "metric": metric,
                "time": time, "value": value, "raw": raw, "flags": flags, "calibration_id": calibration_id,
            },
        }
        for device_id, kind, name, school, lat, lon, time, value, raw, flags, calibration_id in rows
    ]
    return orjson.dumps({"type": "FeatureCollection", "features": features})


@router.get(
    "/latest",
    summary="Newest value of a metric for every device (GeoJSON FeatureCollection)",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}}},
)
async def latest(
    request: Request,
    metric: Metric = "pm25",
    max_age_s: int = Query(3 * 3600, ge=60, le=MAX_AGE_S, description="Ignore devices silent for longer"),
) -> Response:
    check_metric(metric)
    pool = read_pool(request)
    rows_cache: TtlCache[list[tuple[Any, ...]]] = request.app.state.latest_rows
    cache: TtlCache[bytes] = request.app.state.latest_cache

    async def read_rows() -> tuple[list[tuple[Any, ...]], float]:
        read_at = time.monotonic()
        async with pool.connection() as conn:
            cur = await conn.execute(_LATEST.encode(), {"metric": metric, "max_age": MAX_AGE_S}, binary=True)
            return await cur.fetchall(), read_at

    async def compute() -> tuple[bytes, float]:
        rows, age = await rows_cache.get_or_compute(metric, read_rows)
        oldest = datetime.now(UTC) - timedelta(seconds=max_age_s + age)
        return feature_collection(metric, [r for r in rows if r[6] > oldest]), time.monotonic() - age

    body, age = await cache.get_or_compute((metric, max_age_s), compute)
    return Response(
        content=body, media_type="application/geo+json",
        headers={"Cache-Control": f"public, max-age={int(cache.ttl_s)}", "Age": str(int(age))},
    )
