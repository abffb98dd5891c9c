"""Every supported $filter construct against a real PostgreSQL, and every refused one a 400."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from api.sensorthings.filter_sql import _UNSUPPORTED_FUNCTIONS
from tests.api.sensorthings.seed import MINUTES, NOW

STA = "/sta/v1.1"
PM25_A = f"{STA}/Datastreams('box-a:pm25')/Observations"
TIMES = [NOW - timedelta(minutes=m) for m in range(MINUTES)]
POLYGON = "geography'POLYGON((121.5 25.0, 121.6 25.0, 121.6 25.1, 121.5 25.1, 121.5 25.0))'"


def _iso(minutes_ago: int, offset_hours: int = 0) -> str:
    t = (NOW - timedelta(minutes=minutes_ago)).astimezone(timezone(timedelta(hours=offset_hours)))
    return t.isoformat().replace("+00:00", "Z")


def ids(http: TestClient, path: str, flt: str) -> set[str]:
    r = http.get(path, params={"$filter": flt, "$top": "1000", "$select": "id"})
    assert r.status_code == 200, r.text
    return {v["@iot.id"] for v in r.json()["value"]}


def count(http: TestClient, path: str, flt: str) -> int:
    r = http.get(path, params={"$filter": flt, "$top": "1", "$count": "true"})
    assert r.status_code == 200, r.text
    return int(r.json()["@iot.count"])


@pytest.mark.parametrize(("flt", "expected"), [
    ("name eq 'A'", {"box-a"}),
    ("name ne 'A'", {"box-b", "box-c", "park-1"}),
    ("id eq 'box-b'", {"box-b"}),
    ("@iot.id eq 'box-b'", {"box-b"}),
    ("name eq 'A' or name eq 'B'", {"box-a", "box-b"}),
    ("properties/city eq '臺北市' and name eq 'B'", {"box-b"}),
    ("not (properties/city eq '臺北市')", {"box-c"}),
    ("(name eq 'A' or name eq 'B') and properties/district eq '大安區'", {"box-a", "box-b"}),
    ("properties/authority eq null", {"box-b", "box-c", "park-1"}),
    ("properties/authority ne null", {"box-a"}),
    ("substringof('Da''an', properties/school)", {"box-a", "box-b"}),
    ("startswith(name, 'P')", {"park-1"}),
    ("endswith(id, '-c')", {"box-c"}),
    ("length(name) eq 5", {"box-c"}),
    ("tolower(name) eq 'a'", {"box-a"}),
    ("toupper(id) eq 'BOX-B'", {"box-b"}),
    ("indexof(name, 'ox') eq 1", {"box-c"}),
    ("substring(name, 1) eq 'ox-c'", {"box-c"}),
    ("substring(name, 0, 3) eq 'box'", {"box-c"}),
    ("trim(concat(' ', name)) eq 'A'", {"box-a"}),
    ("concat(name, 'x') eq 'Bx'", {"box-b"}),
])
def test_thing_filters(http: TestClient, flt: str, expected: set[str]) -> None:
    assert ids(http, f"{STA}/Things", flt) == expected


@pytest.mark.parametrize(("flt", "expected"), [
    ("result gt 10.5", 40), ("result ge 10.5", 80), ("result lt 10.5", 40), ("result le 10", 40),
    ("result eq 11", 40), ("result ne 11", 80),
    ("result mul 2 eq 21", 40), ("result add 1 gt 11.5", 40), ("result sub 1 eq 9", 40),
    ("result div 2 eq 5.5", 40), ("result mod 2 eq 1", 40), ("-result lt -10.5", 40),
    ("floor(result) eq 10", 80), ("ceiling(result) eq 11", 80), ("round(result add 0.2) eq 11", 80),
    ("parameters/raw gt 20", 80), ("parameters/calibrationId eq 1", MINUTES),
    ("resultTime eq phenomenonTime", MINUTES),
])
def test_observation_value_filters(http: TestClient, flt: str, expected: int) -> None:
    assert count(http, PM25_A, flt) == expected


@pytest.mark.parametrize(("flt", "expected"), [
    (f"phenomenonTime ge {_iso(9)}", 10),
    (f"phenomenonTime ge {_iso(9, 8)}", 10),  # the same instant written in +08:00
    (f"phenomenonTime gt '{_iso(9)}'", 9),  # a quoted ISO time against a time property
    (f"phenomenonTime eq {_iso(10)}/{_iso(5)}", 6),
    (f"phenomenonTime ne {_iso(10)}/{_iso(5)}", MINUTES - 6),
    (f"phenomenonTime lt {_iso(10)}/{_iso(5)}", MINUTES - 11),
    (f"phenomenonTime le {_iso(10)}/{_iso(5)}", MINUTES - 5),
    (f"phenomenonTime gt {_iso(10)}/{_iso(5)}", 5),
    (f"phenomenonTime ge {_iso(10)}/{_iso(5)}", 11),
    (f"{_iso(10)}/{_iso(5)} lt phenomenonTime", 5),
    (f"phenomenonTime ge {_iso(30)} add duration'PT20M'", 11),
    ("phenomenonTime le now() sub duration'PT0S'", MINUTES),
    (f"year(phenomenonTime) eq {NOW.year}", sum(t.year == NOW.year for t in TIMES)),
    (f"month(phenomenonTime) eq {NOW.month}", sum(t.month == NOW.month for t in TIMES)),
    (f"day(phenomenonTime) eq {NOW.day}", sum(t.day == NOW.day for t in TIMES)),
    (f"hour(phenomenonTime) eq {NOW.hour}", sum(t.hour == NOW.hour for t in TIMES)),
    (f"minute(phenomenonTime) eq {NOW.minute}", sum(t.minute == NOW.minute for t in TIMES)),
    ("second(phenomenonTime) eq 0", MINUTES),
    ("fractionalseconds(phenomenonTime) eq 0", MINUTES),
])
def test_observation_time_filters(http: TestClient, flt: str, expected: int) -> None:
    assert count(http, PM25_A, flt) == expected


@pytest.mark.parametrize(("flt", "expected"), [
    ("geo.distance(location, geography'POINT(121.54 25.02)') lt 0.001", {"box-a"}),
    ("geo.distance(location, geography'POINT(121.54 25.02)') gt 0.05", {"box-c"}),
    (f"st_within(location, {POLYGON})", {"box-a", "box-b"}),
    (f"st_intersects(location, {POLYGON})", {"box-a", "box-b"}),
    (f"geo.intersects({POLYGON}, location)", {"box-a", "box-b"}),
    (f"st_contains({POLYGON}, location)", {"box-a", "box-b"}),
    (f"st_disjoint(location, {POLYGON})", {"box-c"}),
    ("st_equals(location, geography'POINT(121.46 25.01)')", {"box-c"}),
])
def test_location_geometry_filters(http: TestClient, flt: str, expected: set[str]) -> None:
    assert ids(http, f"{STA}/Locations", flt) == expected


def test_property_paths_follow_single_valued_navigation(http: TestClient) -> None:
    assert ids(http, f"{STA}/Datastreams", "name eq 'PM2.5' and Thing/properties/city eq '臺北市'") == {
        "box-a:pm25", "box-b:pm25"}
    assert count(http, f"{STA}/Observations",
                 "Datastream/ObservedProperty/name eq 'Temperature' and Datastream/Thing/name eq 'A'") == MINUTES


def test_geometry_through_a_path(http: TestClient) -> None:
    assert count(http, f"{STA}/Observations",
                 "geo.distance(FeatureOfInterest/feature, geography'POINT(121.55 25.03)') lt 0.001 "
                 "and Datastream/ObservedProperty/name eq 'PM2.5'") == MINUTES


_REFUSED = [
    ("Things", "colour eq 'red'", "has no property 'colour'"),
    ("Things", "frobnicate(name) eq 1", "unknown function frobnicate"),
    ("Things", "Datastreams/name eq 'PM2.5'", "crosses the collection"),
    ("Datastreams", "Thing eq 'box-a'", "is an entity"),
    ("Datastreams", f"phenomenonTime gt {_iso(5)}", "time interval"),
    ("Things", "name eq 5", "cannot compare a text value with a number"),
    ("Things", "name gt null", "null can only be compared"),
    ("Locations", "location eq geography'POINT(1 2)'", "cannot be compared"),
    ("Locations", f"geo.distance(location, {POLYGON}) lt 1", "between points"),
    ("Locations", "st_within(location, geography'POINT(1 2)')", "as the area"),
    ("Locations", f"st_equals(location, {POLYGON})", "compares points"),
    ("Things", f"st_within(name, {POLYGON})", "needs a geometry"),
    ("Things", "startswith(name)", "takes 2 argument"),
    ("Things", "name", "must be a condition"),
    ("Things", "not name", "needs conditions"),
    ("Things", "name add 1 eq 2", "needs numbers"),
    ("Things", "length(1) eq 1", "needs text"),
    ("Things", "year(name) eq 2024", "needs a time"),
    ("Things", "properties/city eq 2024-01-01T00:00:00Z", "JSON property cannot be compared"),
    ("Things", "name/first eq 'x'", "is not a JSON object"),
    ("Observations", "phenomenonTime gt '2024-01-01T00:00:00'", "no time zone"),
    ("Observations", "phenomenonTime gt 'yesterday'", "not an ISO 8601"),
    ("Things", "Datastreams/any(d: d/name eq 'x')", "unexpected"),
    ("Things", "name in ('A', 'B')", "unexpected"),
    ("Things", "name eq", "expected a value"),
    *[("Observations", f"{name}(phenomenonTime) eq 1", "not supported") for name in sorted(_UNSUPPORTED_FUNCTIONS)],
]


@pytest.mark.parametrize(("entity_set", "flt", "reason"), _REFUSED)
def test_unsupported_filter_is_a_400_with_a_sentence(http: TestClient, entity_set: str, flt: str, reason: str) -> None:
    r = http.get(f"{STA}/{entity_set}", params={"$filter": flt})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 400 and reason in body["message"], body["message"]
