"""Parking: free bays per zone, and the bays and zones as FIWARE Smart Data Models (`ParkingSpot`,
`OnStreetParking`), all derived from each sensor's newest event by one query (`_SPOT_STATES`)."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from psycopg.rows import dict_row

from api import smart_data_models as sdm
from api.deps import DbDep
from api.errors import READ_ERRORS
from api.params import NO_NUL
from api.rate_limit import RateLimited

router = APIRouter(prefix="/v1/parking", tags=["parking"], dependencies=[RateLimited], responses=READ_ERRORS)

# Every bay, its position (its own, else its sensor's), and the newest event of its sensor that
# says occupied or free; `stale` when there is none within the window. %(zone)s NULL: every zone.
_SPOT_STATES = """
SELECT s.spot_id, s.zone, s.device_id, coalesce(s.lat, d.lat) AS lat, coalesce(s.lon, d.lon) AS lon, s.geometry,
       e.time, e.occupied,
       (e.time IS NULL OR e.time < now() - make_interval(secs => %(stale)s)) AS stale,
       (d.retired_at IS NOT NULL) AS retired
FROM parking_spots s
LEFT JOIN devices d ON d.device_id = s.device_id
LEFT JOIN LATERAL (
  SELECT time, occupied FROM parking_events
  WHERE device_id = s.device_id AND occupied IS NOT NULL
  ORDER BY time DESC LIMIT 1
) e ON true
WHERE %(zone)s::text IS NULL OR s.zone = %(zone)s
"""

# a zone's free + occupied + unknown is its bays: the statuses of api/smart_data_models.spot_status
_ZONES = f"""
WITH spot AS ({_SPOT_STATES})
SELECT zone,
       count(*) AS bays,
       count(*) FILTER (WHERE occupied AND NOT stale AND NOT retired) AS occupied,
       count(*) FILTER (WHERE occupied IS FALSE AND NOT stale AND NOT retired) AS free,
       count(*) FILTER (WHERE stale OR retired OR occupied IS NULL) AS unknown,
       max(time) AS newest_event
FROM spot
GROUP BY zone ORDER BY zone
"""

StaleQuery = Query(3600, ge=60, le=7 * 86400, description="Older events count as unknown")
ZoneQuery = Query(None, max_length=200, pattern=NO_NUL, description="Only this zone (OnStreetParking name)")
FormatQuery = Query(
    "geojson", description="geojson: a FeatureCollection; ngsi-ld: an array of NGSI-LD entities (application/ld+json, "
    "or application/json with the @context in a Link header when the client accepts only that)",
)
OptionsQuery = Query(
    None, description="keyValues or normalized (NGSI-LD's options); default: normalized for ngsi-ld, "
    "keyValues for the GeoJSON properties",
)
SDM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/geo+json": {}, "application/ld+json": {}, "application/json": {}}},
}


@router.get("/zones", summary="Bays, occupied, free and unknown per zone")
async def zones(db: DbDep, stale_s: int = StaleQuery) -> dict[str, Any]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(_ZONES.encode(), {"stale": stale_s, "zone": None})
        rows = await cur.fetchall()
    return {"meta": {"found": len(rows)}, "results": rows}


async def _spot_states(db: DbDep, stale_s: int, zone: str | None) -> list[sdm.SpotState]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute((_SPOT_STATES + " ORDER BY s.zone, s.spot_id").encode(), {"stale": stale_s, "zone": zone})
        return [sdm.SpotState(**row) for row in await cur.fetchall()]


def _answer(request: Request, entities: list[dict[str, Any]], fmt: str, options: str | None) -> Response:
    """The entities in the requested shape, with the media type and @context NGSI-LD asks for."""
    if fmt == "geojson":
        body = sdm.feature_collection(entities, normalize=options == "normalized")
        return Response(orjson.dumps(body), media_type="application/geo+json")
    shaped = entities if options == "keyValues" else [sdm.normalized(e) for e in entities]
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "application/ld+json" not in accept:
        return Response(orjson.dumps(shaped), media_type="application/json", headers={"Link": sdm.CONTEXT_LINK})
    return Response(orjson.dumps([sdm.with_context(e) for e in shaped]), media_type="application/ld+json")


@router.get(
    "/spots", summary="Every bay as a Smart Data Models ParkingSpot (status free|occupied|unknown)",
    response_class=Response, responses=SDM_RESPONSES,
)
async def spots(
    request: Request, db: DbDep, stale_s: int = StaleQuery, site: str | None = ZoneQuery,
    format: Literal["geojson", "ngsi-ld"] = FormatQuery,  # noqa: A002 - the query parameter's name
    options: Literal["keyValues", "normalized"] | None = OptionsQuery,
) -> Response:
    states = await _spot_states(db, stale_s, site)
    return _answer(request, [sdm.parking_spot(s) for s in states], format, options)


@router.get(
    "/sites", summary="Every zone as a Smart Data Models OnStreetParking (total, available, occupied spots)",
    response_class=Response, responses=SDM_RESPONSES,
)
async def sites(
    request: Request, db: DbDep, stale_s: int = StaleQuery, site: str | None = ZoneQuery,
    format: Literal["geojson", "ngsi-ld"] = FormatQuery,  # noqa: A002 - the query parameter's name
    options: Literal["keyValues", "normalized"] | None = OptionsQuery,
) -> Response:
    states = await _spot_states(db, stale_s, site)
    return _answer(request, sdm.on_street_parkings(states), format, options)


@router.get("/bays", summary="Every bay with a position: zone, status (free, occupied, unknown), newest event")
async def bays(db: DbDep, stale_s: int = StaleQuery, site: str | None = ZoneQuery) -> dict[str, Any]:
    """The map's bays: the ParkingSpot status of each bay that has a position, in plain JSON."""
    rows = [
        {"spot_id": s.spot_id, "zone": s.zone, "device_id": s.device_id, "lat": s.lat, "lon": s.lon, "time": s.time,
         "status": sdm.spot_status(s)}
        for s in await _spot_states(db, stale_s, site) if s.lat is not None and s.lon is not None
    ]
    return {"meta": {"found": len(rows)}, "results": rows}
