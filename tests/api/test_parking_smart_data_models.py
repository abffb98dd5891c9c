"""`/v1/parking/spots` and `/v1/parking/sites` as FIWARE Smart Data Models ParkingSpot and
OnStreetParking, against a real PostgreSQL with known rows.

The entities are checked against validators written here from the models' JSON Schemas
(smart-data-models/dataModel.Parking: ParkingSpot/schema.json, OnStreetParking/schema.json):
their required attributes, enums and types. The published schemas `$ref` common schemas by
URL, which a test here cannot fetch, so the parts that concern these attributes are restated.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.app import create_app
from api.smart_data_models import CONTEXT, CONTEXT_LINK
from contracts.settings import Settings
from tests.api.seed import seed_city

NGSI_ID = r"^urn:ngsi-ld:[A-Za-z]+:[\w\-\.:~%]+$"
EntityId = Annotated[str, Field(pattern=NGSI_ID, max_length=256)]


class GeoJsonGeometry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon"]
    coordinates: list[Any]


class ParkingSpotSchema(BaseModel):
    """ParkingSpot/schema.json: required id, location, type, status, category, refParkingSite."""

    id: EntityId
    type: Literal["ParkingSpot"]
    location: GeoJsonGeometry
    status: Literal["closed", "free", "occupied", "unknown"]
    category: Annotated[list[Literal["onStreet", "offStreet"]], Field(min_length=1)]
    refParkingSite: EntityId
    refDevice: Annotated[list[EntityId], Field(min_length=1)] | None = None
    name: str | None = None
    dateObserved: datetime | None = None

    @model_validator(mode="after")
    def _unique_categories(self) -> ParkingSpotSchema:
        assert len(set(self.category)) == len(self.category), "category items must be unique"
        return self


class OnStreetParkingSchema(BaseModel):
    """OnStreetParking/schema.json: required id, type, location; counts are integers >= 0, and
    extraSpotNumber plus availableSpotNumber at most totalSpotNumber."""

    id: EntityId
    type: Literal["OnStreetParking"]
    location: GeoJsonGeometry
    totalSpotNumber: Annotated[int, Field(ge=0)]
    availableSpotNumber: Annotated[int, Field(ge=0)]
    occupiedSpotNumber: Annotated[int, Field(ge=0)]
    occupancyDetectionType: list[Literal["balancing", "manual", "modelBased", "none", "singleSpaceDetection"]]
    refParkingSpot: list[EntityId]
    name: str | None = None
    dateModified: datetime | None = None

    @model_validator(mode="after")
    def _counts_fit(self) -> OnStreetParkingSchema:
        assert self.availableSpotNumber + self.occupiedSpotNumber <= self.totalSpotNumber
        return self


def key_values_of(entity: dict[str, Any]) -> dict[str, Any]:
    """Undo NGSI-LD normalization, checking each attribute is a well-formed Property, GeoProperty or Relationship."""
    out: dict[str, Any] = {}
    for name, attr in entity.items():
        if name in ("id", "type", "@context"):
            out[name] = attr
            continue
        assert attr["type"] in ("Property", "GeoProperty", "Relationship"), (name, attr)
        if attr["type"] == "Relationship":
            assert name.startswith("ref") and "value" not in attr
            out[name] = attr["object"]
        elif isinstance(attr["value"], dict) and attr["value"].get("@type") == "DateTime":
            out[name] = attr["value"]["@value"]
        else:
            assert (attr["type"] == "GeoProperty") == (name == "location"), name
            out[name] = attr["value"]
    return out


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    """The seeded city (zone ximen: s1 free, s2 occupied), a bay without a sensor (unknown) in
    ximen and a bay of a stale sensor (unknown) in zone daan, each with its own position."""
    seed_city(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO devices (device_id, kind, lat, lon, registered) "
                     "VALUES ('park-3', 'parking', 25.03, 121.54, true)")
        conn.execute("INSERT INTO parking_spots (spot_id, device_id, zone, lat, lon) VALUES "
                     "('s3', NULL, 'ximen', 25.0421, 121.5071), ('d1', 'park-3', 'daan', 25.0301, 121.5402)")
        conn.execute("INSERT INTO parking_events (time, device_id, occupied, ev) "
                     "VALUES (now() - interval '3 hours', 'park-3', true, 'change')")
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


def test_spots_are_parking_spots_with_the_models_attributes(http: TestClient) -> None:
    r = http.get("/v1/parking/spots", params={"format": "ngsi-ld", "options": "keyValues"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/ld+json"
    entities = r.json()
    for entity in entities:
        ParkingSpotSchema.model_validate(entity)
        assert entity["@context"] == CONTEXT
    status = {e["name"]: e["status"] for e in entities}
    assert status == {"s1": "free", "s2": "occupied", "s3": "unknown", "d1": "unknown"}
    s1 = next(e for e in entities if e["name"] == "s1")
    assert s1["id"] == "urn:ngsi-ld:ParkingSpot:s1"
    assert s1["refParkingSite"] == "urn:ngsi-ld:OnStreetParking:ximen"
    assert s1["refDevice"] == ["urn:ngsi-ld:Device:park-1"]
    assert s1["location"] == {"type": "Point", "coordinates": [121.56, 25.04]}  # its sensor's position
    assert "refDevice" not in next(e for e in entities if e["name"] == "s3")


def test_sites_are_on_street_parkings_counting_their_bays(http: TestClient) -> None:
    entities = http.get("/v1/parking/sites", params={"format": "ngsi-ld", "options": "keyValues"}).json()
    for entity in entities:
        OnStreetParkingSchema.model_validate(entity)
    by_name = {e["name"]: e for e in entities}
    ximen = by_name["ximen"]
    assert (ximen["totalSpotNumber"], ximen["availableSpotNumber"], ximen["occupiedSpotNumber"]) == (3, 1, 1)
    assert ximen["refParkingSpot"] == ["urn:ngsi-ld:ParkingSpot:s1", "urn:ngsi-ld:ParkingSpot:s2",
                                       "urn:ngsi-ld:ParkingSpot:s3"]
    assert ximen["location"] == {"type": "MultiPoint", "coordinates": [[121.5071, 25.0421], [121.56, 25.04]]}
    daan = by_name["daan"]  # its one sensor is stale: neither free nor occupied
    assert (daan["totalSpotNumber"], daan["availableSpotNumber"], daan["occupiedSpotNumber"]) == (1, 0, 0)


@pytest.mark.parametrize(("path", "schema"), [("/v1/parking/spots", ParkingSpotSchema),
                                              ("/v1/parking/sites", OnStreetParkingSchema)])
def test_normalized_entities_are_ngsi_ld_properties_of_the_same_values(
    http: TestClient, path: str, schema: type[BaseModel]
) -> None:
    flat = http.get(path, params={"format": "ngsi-ld", "options": "keyValues"}).json()
    normal = http.get(path, params={"format": "ngsi-ld"}).json()
    assert [key_values_of(e) for e in normal] == flat
    for entity in normal:
        schema.model_validate(key_values_of(entity))
        observed = entity.get("status", entity.get("availableSpotNumber"))
        if "dateObserved" in entity or "dateModified" in entity:
            assert observed["observedAt"].endswith("Z"), observed


def test_a_client_that_accepts_only_json_gets_the_context_in_a_link_header(http: TestClient) -> None:
    r = http.get("/v1/parking/spots", params={"format": "ngsi-ld"}, headers={"Accept": "application/json"})
    assert r.headers["content-type"] == "application/json" and r.headers["link"] == CONTEXT_LINK
    assert all("@context" not in e for e in r.json())


def test_geojson_features_carry_the_models_names(http: TestClient) -> None:
    r = http.get("/v1/parking/spots")
    assert r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    by_id = {f["id"]: f for f in fc["features"]}
    s2 = by_id["urn:ngsi-ld:ParkingSpot:s2"]
    assert s2["geometry"] == {"type": "Point", "coordinates": [121.56, 25.04]}
    assert (s2["properties"]["type"], s2["properties"]["status"]) == ("ParkingSpot", "occupied")
    sites = http.get("/v1/parking/sites", params={"options": "normalized"}).json()["features"]
    ximen = next(f for f in sites if f["id"] == "urn:ngsi-ld:OnStreetParking:ximen")
    assert ximen["properties"]["availableSpotNumber"]["value"] == 1


def test_one_site_can_be_asked_for(http: TestClient) -> None:
    spots = http.get("/v1/parking/spots", params={"site": "daan", "format": "ngsi-ld", "options": "keyValues"}).json()
    assert [s["name"] for s in spots] == ["d1"]
    assert http.get("/v1/parking/sites", params={"site": "nowhere"}).json()["features"] == []


def test_an_unknown_format_is_refused(http: TestClient) -> None:
    assert http.get("/v1/parking/spots", params={"format": "ngsi-v2"}).status_code == 422
