"""Parking: free bays per zone, derived from each sensor's newest event."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from psycopg.rows import dict_row

from api.deps import DbDep
from api.errors import READ_ERRORS
from api.rate_limit import RateLimited

router = APIRouter(prefix="/v1/parking", tags=["parking"], dependencies=[RateLimited], responses=READ_ERRORS)

# each bay's newest occupancy; older than `stale` seconds (or none) is unknown: the one rule the
# zones' counts and the bays' colours share, so a zone's free + occupied + unknown is its bays
_BAY_STATUS = """
SELECT s.spot_id, s.zone, s.device_id, s.lat, s.lon, e.time,
       CASE WHEN e.time IS NULL OR e.time < now() - make_interval(secs => %(stale)s) THEN 'unknown'
            WHEN e.occupied THEN 'occupied' ELSE 'free' END AS status
FROM parking_spots s
LEFT JOIN LATERAL (
  SELECT time, occupied FROM parking_events
  WHERE device_id = s.device_id AND occupied IS NOT NULL
  ORDER BY time DESC LIMIT 1
) e ON true
"""

_ZONES = f"""
SELECT zone,
       count(*) AS bays,
       count(*) FILTER (WHERE status = 'occupied') AS occupied,
       count(*) FILTER (WHERE status = 'free') AS free,
       count(*) FILTER (WHERE status = 'unknown') AS unknown,
       max(time) AS newest_event
FROM ({_BAY_STATUS}) b
GROUP BY zone ORDER BY zone
"""

_BAYS = f"SELECT * FROM ({_BAY_STATUS}) b WHERE lat IS NOT NULL AND lon IS NOT NULL ORDER BY zone, spot_id"


@router.get("/zones", summary="Bays, occupied, free and unknown per zone")
async def zones(
    db: DbDep, stale_s: int = Query(3600, ge=60, le=7 * 86400, description="Older events count as unknown")
) -> dict[str, Any]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(_ZONES.encode(), {"stale": stale_s})
        rows = await cur.fetchall()
    return {"meta": {"found": len(rows)}, "results": rows}


@router.get("/bays", summary="Every bay with a position: zone, status (free, occupied, unknown), newest event")
async def bays(
    db: DbDep, stale_s: int = Query(3600, ge=60, le=7 * 86400, description="Older events count as unknown")
) -> dict[str, Any]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(_BAYS.encode(), {"stale": stale_s})
        rows = await cur.fetchall()
    return {"meta": {"found": len(rows)}, "results": rows}
