"""The OGC 18-088 conformance points that apply to a read-only service (Annex A: Sensing Core
A.1 entity control information and A.2 resource paths, A.3 request-data query options), one
test each, against a real PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.sensorthings.entity_model import ENTITY_SETS
from tests.api.sensorthings.seed import MINUTES

STA = "/sta/v1.1"
BASE = "http://testserver" + STA


def _get(http: TestClient, path: str, **params: str) -> dict:  # type: ignore[type-arg]
    r = http.get(STA + path, params=params)
    assert r.status_code == 200, r.text
    body: dict = r.json()  # type: ignore[type-arg]
    return body


def test_service_root_lists_every_entity_set_and_its_conformance(http: TestClient) -> None:
    body = _get(http, "")
    assert [v["name"] for v in body["value"]] == list(ENTITY_SETS)
    assert all(v["url"] == f"{BASE}/{v['name']}" for v in body["value"])
    assert any("request-data" in c for c in body["serverSettings"]["conformance"])


def test_every_entity_set_answers_a_collection(http: TestClient) -> None:
    for name in ENTITY_SETS:
        assert isinstance(_get(http, f"/{name}")["value"], list)


def test_entities_carry_control_information(http: TestClient) -> None:
    for name in ENTITY_SETS:
        for entity in _get(http, f"/{name}", **{"$top": "2"})["value"]:
            assert isinstance(entity["@iot.id"], str)
            assert entity["@iot.selfLink"].startswith(f"{BASE}/{name}(")
            for nav in ENTITY_SETS[name].navigations:
                assert entity[f"{nav}@iot.navigationLink"] == f"{entity['@iot.selfLink']}/{nav}"


def test_self_link_reads_the_entity_back(http: TestClient) -> None:
    for name in ENTITY_SETS:
        for entity in _get(http, f"/{name}", **{"$top": "2"})["value"]:
            again = http.get(entity["@iot.selfLink"].removeprefix("http://testserver")).json()
            assert again["@iot.id"] == entity["@iot.id"]


def test_mandatory_properties_of_each_entity_type(http: TestClient) -> None:
    thing = _get(http, "/Things('box-a')")
    assert {"name", "description", "properties"} <= set(thing)
    assert thing["properties"]["city"] == "臺北市" and thing["properties"]["district"] == "大安區"
    location = _get(http, "/Locations('box-a')")
    assert location["encodingType"] == "application/geo+json"
    assert location["location"] == {"type": "Point", "coordinates": [121.54, 25.02]}
    ds = _get(http, "/Datastreams('box-a:pm25')")
    assert ds["unitOfMeasurement"]["symbol"] == "µg/m³" and ds["unitOfMeasurement"]["definition"].startswith("http")
    assert ds["observationType"].endswith("OM_Measurement") and "/" in ds["phenomenonTime"]
    op = _get(http, "/ObservedProperties('pm25')")
    assert op["name"] == "PM2.5" and op["definition"].startswith("http")
    sensor = _get(http, "/Sensors('pms5003')")
    assert sensor["encodingType"] == "application/json"
    assert sensor["metadata"]["calibrations"][0]["model"]["type"] == "linear"
    foi = _get(http, "/FeaturesOfInterest('box-a')")
    assert foi["feature"]["type"] == "Point" and foi["name"] == "Roof"


def test_observation_carries_calibrated_result_raw_flags_and_quality(http: TestClient) -> None:
    newest = _get(http, "/Datastreams('box-a:pm25')/Observations", **{"$orderby": "phenomenonTime desc", "$top": "1"})
    obs = newest["value"][0]
    assert obs["result"] == 10.0 and obs["parameters"] == {"raw": 20, "flags": 0, "calibrationId": 1}
    assert obs["resultQuality"] is None and obs["phenomenonTime"] == obs["resultTime"]
    flagged = _get(http, "/Datastreams('box-c:pm25')/Observations")["value"][0]
    assert flagged["result"] is None and flagged["resultQuality"] == ["SENTINEL"]


def test_observation_ids_are_stable_and_address_the_reading(http: TestClient) -> None:
    first = _get(http, "/Observations", **{"$top": "1"})["value"][0]
    assert _get(http, f"/Observations('{first['@iot.id']}')") == first


def test_entity_by_id_that_does_not_exist_is_404(http: TestClient) -> None:
    for path in ("/Things('nope')", "/Datastreams('box-a:ozone')", "/Observations('box-a:pm25:1')", "/Nothings"):
        r = http.get(STA + path)
        assert r.status_code == 404 and r.json()["message"], path


def test_property_and_property_value(http: TestClient) -> None:
    assert _get(http, "/Things('box-a')/name") == {"name": "A"}
    r = http.get(STA + "/Things('box-a')/name/$value")
    assert r.status_code == 200 and r.text == "A"


def test_navigation_paths(http: TestClient) -> None:
    assert {v["@iot.id"] for v in _get(http, "/Things('box-a')/Datastreams")["value"]} == {
        "box-a:pm25", "box-a:rh", "box-a:t"}
    assert len(_get(http, "/Datastreams('box-a:pm25')/Observations", **{"$top": "1000"})["value"]) == MINUTES
    obs = _get(http, "/Datastreams('box-a:pm25')/Observations", **{"$top": "1"})["value"][0]
    assert _get(http, f"/Observations('{obs['@iot.id']}')/Datastream/Thing")["@iot.id"] == "box-a"
    assert _get(http, "/Things('box-a')/Locations")["value"][0]["@iot.id"] == "box-a"
    assert _get(http, "/Things('box-a')/HistoricalLocations")["value"] == []
    assert _get(http, "/ObservedProperties('pm25')/Datastreams", **{"$count": "true"})["@iot.count"] == 3
    assert _get(http, "/Datastreams('box-a:pm25')/Sensor")["@iot.id"] == "pms5003"
    assert _get(http, "/Things('box-a')/Datastreams('box-a:rh')")["name"] == "Relative humidity"


def test_association_links(http: TestClient) -> None:
    refs = _get(http, "/Things('box-a')/Datastreams/$ref")["value"]
    assert refs and all(set(r) == {"@iot.selfLink"} for r in refs)
    assert _get(http, "/Datastreams('box-a:pm25')/Thing/$ref") == {"@iot.selfLink": f"{BASE}/Things('box-a')"}


def test_top_skip_and_next_link_page_through_everything(http: TestClient) -> None:
    seen: list[str] = []
    page = _get(http, "/Datastreams('box-b:pm25')/Observations", **{"$top": "50", "$count": "true"})
    assert page["@iot.count"] == MINUTES
    while True:
        seen.extend(v["@iot.id"] for v in page["value"])
        if "@iot.nextLink" not in page:
            break
        page = http.get(page["@iot.nextLink"].removeprefix("http://testserver")).json()
    assert len(seen) == len(set(seen)) == MINUTES


def test_count_false_leaves_the_count_out(http: TestClient) -> None:
    assert "@iot.count" not in _get(http, "/Things", **{"$count": "false"})


def test_orderby_several_keys_asc_and_desc(http: TestClient) -> None:
    values = _get(http, "/Datastreams", **{"$orderby": "name desc, id asc", "$select": "id,name"})["value"]
    keys = [(v["name"], v["@iot.id"]) for v in values]
    assert keys == sorted(keys, key=lambda k: (tuple(-ord(c) for c in k[0]), k[1]))


def test_select_returns_only_what_was_asked(http: TestClient) -> None:
    thing = _get(http, "/Things('box-a')", **{"$select": "name,Datastreams"})
    assert set(thing) == {"name", "Datastreams@iot.navigationLink"}


def test_expand_nested_with_its_own_options(http: TestClient) -> None:
    thing = _get(http, "/Things('box-a')", **{
        "$expand": "Datastreams($filter=name eq 'PM2.5';$expand=Observations($orderby=phenomenonTime desc;$top=1);"
                   "$select=id,name),Locations"})
    assert [d["@iot.id"] for d in thing["Datastreams"]] == ["box-a:pm25"]
    newest = thing["Datastreams"][0]["Observations"]
    assert len(newest) == 1 and newest[0]["result"] == 10.0
    assert thing["Datastreams"][0]["Observations@iot.nextLink"].endswith("$skip=1")
    assert thing["Locations"][0]["location"]["type"] == "Point"


def test_expand_with_a_path_and_a_count(http: TestClient) -> None:
    body = _get(http, "/Observations", **{"$top": "2", "$expand": "Datastream/Thing"})
    assert all(o["Datastream"]["Thing"]["@iot.id"] for o in body["value"])
    things = _get(http, "/Things", **{"$expand": "Datastreams($count=true;$top=1)"})["value"]
    counts = {t["@iot.id"]: t["Datastreams@iot.count"] for t in things}
    assert counts == {"box-a": 3, "box-b": 3, "box-c": 1, "park-1": 1}


def test_the_taiwan_latest_query(http: TestClient) -> None:
    body = _get(http, "/Datastreams", **{
        "$expand": "Thing,Observations($orderby=phenomenonTime desc;$top=1)",
        "$filter": "name eq 'PM2.5' and Thing/properties/city eq '臺北市'", "$count": "true"})
    assert body["@iot.count"] == 2
    latest = {d["Thing"]["@iot.id"]: d["Observations"][0]["result"] for d in body["value"]}
    assert latest == {"box-a": 10.0, "box-b": 20.0}


def test_refused_query_options_are_400_with_a_sentence(http: TestClient) -> None:
    for params, reason in (
        ({"$top": "5000"}, "at most 1000"), ({"$top": "-1"}, "non-negative"), ({"$skip": "x"}, "non-negative"),
        ({"$count": "yes"}, "true or false"), ({"$orderby": "name sideways"}, "'asc' or 'desc'"),
        ({"$select": "colour"}, "no property 'colour'"), ({"$expand": "Colours"}, "no navigation property"),
        ({"$expand": "Datastreams($top=1"}, "unbalanced"), ({"$resultFormat": "dataArray"}, "not supported"),
        ({"$search": "pm"}, "not supported"), ({"$apply": "x"}, "unknown query option"),
        ({"$expand": "Datastreams/Thing/Datastreams/Thing/Datastreams/Thing"}, "deeper"),
        ({"$select": "Thing/name"}, "not paths"),
    ):
        r = http.get(STA + "/Things", params=params)
        assert r.status_code == 400 and reason in r.json()["message"], (params, r.text)
    for path, reason in (("/Things/name", "collection"), ("/Things('box-a')/$value", "$value follows a property"),
                         ("/Things('box-a')/name/first", "property"), ("/Things(''", "cannot read")):
        r = http.get(STA + path)
        assert r.status_code == 400 and reason in r.json()["message"], (path, r.text)
