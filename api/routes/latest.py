"""The city map: the newest value of one metric per device, as GeoJSON."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import DbDep
from api.params import Metric, check_metric
from api.response_cache import TtlCache

router = APIRouter(prefix="/v1", tags=["latest"])

# One index probe per device (LATERAL ... LIMIT 1 on the unique (device_id, metric, time)
# index) instead of a scan of the readings: constant work per device however long the history.
_LATEST = """
SELECT json_build_object(
  'type', 'FeatureCollection',
  'features', coalesce(json_agg(json_build_object(
      'type', 'Feature',
      'id', d.device_id,
      'geometry', CASE WHEN d.lat IS NULL THEN NULL
                  ELSE json_build_object('type', 'Point', 'coordinates', json_build_array(d.lon, d.lat)) END,
      'properties', json_build_object(
          'device_id', d.device_id, 'kind', d.kind, 'name', d.name, 'school', d.school,
          'metric', %(metric)s::text, 'time', r.time, 'value', r.value, 'raw', r.raw, 'flags', r.flags,
          'calibration_id', r.calibration_id)
  ) ORDER BY d.device_id), '[]'::json))::text
FROM devices d
CROSS JOIN LATERAL (
  SELECT time, value, raw, flags, calibration_id FROM readings
  WHERE device_id = d.device_id AND metric = %(metric)s AND time > now() - make_interval(secs => %(max_age)s)
        AND time <= now() + interval '10 minutes'
  ORDER BY time DESC LIMIT 1
) r
WHERE d.retired_at IS NULL
"""


@router.get(
    "/latest",
    summary="Newest value of a metric for every device (GeoJSON FeatureCollection)",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}}},
)
async def latest(
    request: Request,
    db: DbDep,
    metric: Metric = "pm25",
    max_age_s: int = Query(3 * 3600, ge=60, le=30 * 86400, description="Ignore devices silent for longer"),
) -> Response:
    check_metric(metric)

    async def compute() -> bytes:
        cur = await db.execute(_LATEST.encode(), {"metric": metric, "max_age": max_age_s})
        row = await cur.fetchone()
        text: str = row[0] if row else '{"type":"FeatureCollection","features":[]}'
        return text.encode()

    cache: TtlCache = request.app.state.latest_cache
    body, age = await cache.get_or_compute((metric, max_age_s), compute)
    return Response(
        content=body, media_type="application/geo+json",
        headers={"Cache-Control": f"public, max-age={int(cache.ttl_s)}", "Age": str(int(age))},
    )
