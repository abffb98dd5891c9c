"""Parking as FIWARE Smart Data Models: one `ParkingSpot` per bay, one `OnStreetParking` per zone.

Built from the spot states of api/routes/parking.py (one query), in the three shapes FIWARE
clients read (each a pure function of those rows):
- key-values: the models' attribute names with plain values (NGSI-LD `options=keyValues`);
- NGSI-LD normalized: every attribute a `Property` (`observedAt` on the observed ones), a
  `GeoProperty` (`location`) or a `Relationship` (`refParkingSite`, `refParkingSpot`, `refDevice`);
- GeoJSON: a FeatureCollection whose features carry the location as geometry and either form as properties.

Attributes (from the models' specs, dataModel.Parking): ParkingSpot `status` (free | occupied |
unknown | closed; citysense has no closure data, so it never says closed), `category`
[onStreet], `refParkingSite`, `location`, `name`, `refDevice`, `dateObserved`. OnStreetParking
`totalSpotNumber`, `availableSpotNumber` (free bays with a fresh event), `occupiedSpotNumber`,
`occupancyDetectionType` [singleSpaceDetection], `refParkingSpot`, `location` (the bays'
positions, a Point or MultiPoint), `name`, `dateModified` (its newest event). `location` is
left out of an entity no position is known for (the models require it: register positions).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

SDM_CONTEXT = "https://smartdatamodels.org/context.jsonld"
NGSI_LD_CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
CONTEXT = [SDM_CONTEXT, NGSI_LD_CORE_CONTEXT]
CONTEXT_LINK = f'<{SDM_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
RELATIONSHIPS = frozenset({"refParkingSite", "refParkingSpot", "refDevice"})
DATE_TIMES = frozenset({"dateObserved", "dateModified"})
OBSERVED = frozenset({"status", "availableSpotNumber", "occupiedSpotNumber"})  # carry observedAt when normalized


@dataclass(frozen=True, slots=True)
class SpotState:
    """One bay as api/routes/parking.py reads it: its newest occupancy event and whether it is usable."""

    spot_id: str
    zone: str
    device_id: str | None
    lat: float | None
    lon: float | None
    geometry: dict[str, Any] | None  # the bay's own GeoJSON geometry, when stored
    time: datetime | None  # of the newest event with an occupancy
    occupied: bool | None
    stale: bool  # no event, or none within the staleness window
    retired: bool  # its sensor is retired


def urn(entity_type: str, local_id: str) -> str:
    """The NGSI-LD id of an entity: urn:ngsi-ld:{type}:{id}, the id percent-encoded where a URN needs it."""
    return f"urn:ngsi-ld:{entity_type}:{quote(local_id, safe='-._~:')}"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def spot_status(spot: SpotState) -> str:
    """ParkingSpot.status: what the newest fresh event of a working sensor says, else unknown."""
    if spot.stale or spot.retired or spot.occupied is None:
        return "unknown"
    return "occupied" if spot.occupied else "free"


def _spot_location(spot: SpotState) -> dict[str, Any] | None:
    if spot.geometry is not None:
        return spot.geometry
    if spot.lat is None or spot.lon is None:
        return None
    return {"type": "Point", "coordinates": [spot.lon, spot.lat]}


def parking_spot(spot: SpotState) -> dict[str, Any]:
    """A ParkingSpot, key-values."""
    entity: dict[str, Any] = {
        "id": urn("ParkingSpot", spot.spot_id), "type": "ParkingSpot", "name": spot.spot_id,
        "status": spot_status(spot), "category": ["onStreet"], "refParkingSite": urn("OnStreetParking", spot.zone),
    }
    location = _spot_location(spot)
    if location is not None:
        entity["location"] = location
    if spot.device_id is not None:
        entity["refDevice"] = [urn("Device", spot.device_id)]
    if spot.time is not None:
        entity["dateObserved"] = _iso(spot.time)
    return entity


def _site_location(spots: list[SpotState]) -> dict[str, Any] | None:
    points = sorted({(s.lon, s.lat) for s in spots if s.lat is not None and s.lon is not None})
    if not points:
        return None
    if len(points) == 1:
        return {"type": "Point", "coordinates": list(points[0])}
    return {"type": "MultiPoint", "coordinates": [list(p) for p in points]}


def on_street_parkings(spots: Iterable[SpotState]) -> list[dict[str, Any]]:
    """One OnStreetParking per zone, key-values, its numbers counted from its bays' statuses."""
    zones: dict[str, list[SpotState]] = {}
    for spot in spots:
        zones.setdefault(spot.zone, []).append(spot)
    sites = []
    for zone, members in sorted(zones.items()):
        statuses = [spot_status(s) for s in members]
        site: dict[str, Any] = {
            "id": urn("OnStreetParking", zone), "type": "OnStreetParking", "name": zone,
            "totalSpotNumber": len(members), "availableSpotNumber": statuses.count("free"),
            "occupiedSpotNumber": statuses.count("occupied"), "occupancyDetectionType": ["singleSpaceDetection"],
            "refParkingSpot": [urn("ParkingSpot", s.spot_id) for s in members],
        }
        location = _site_location(members)
        if location is not None:
            site["location"] = location
        times = [s.time for s in members if s.time is not None]
        if times:
            site["dateModified"] = _iso(max(times))
        sites.append(site)
    return sites


def normalized(entity: dict[str, Any]) -> dict[str, Any]:
    """The NGSI-LD normalized form of a key-values entity."""
    observed_at = entity.get("dateObserved", entity.get("dateModified"))
    out: dict[str, Any] = {"id": entity["id"], "type": entity["type"]}
    for name, value in entity.items():
        if name in ("id", "type", "@context"):
            continue
        if name in RELATIONSHIPS:
            out[name] = {"type": "Relationship", "object": value}
        elif name == "location":
            out[name] = {"type": "GeoProperty", "value": value}
        elif name in DATE_TIMES:
            out[name] = {"type": "Property", "value": {"@type": "DateTime", "@value": value}}
        else:
            out[name] = {"type": "Property", "value": value}
            if name in OBSERVED and observed_at is not None:
                out[name]["observedAt"] = observed_at
    return out


def with_context(entity: dict[str, Any]) -> dict[str, Any]:
    """The entity as application/ld+json carries it: its own @context."""
    return {**entity, "@context": CONTEXT}


def feature_collection(entities: list[dict[str, Any]], *, normalize: bool) -> dict[str, Any]:
    """GeoJSON: geometry from `location` (null when unknown), properties in the chosen form."""
    features = []
    for entity in entities:
        props = normalized(entity) if normalize else dict(entity)
        props.pop("id")
        features.append({"type": "Feature", "id": entity["id"], "geometry": entity.get("location"),
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}
