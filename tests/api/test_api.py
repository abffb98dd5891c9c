"""The query API against a real PostgreSQL with known rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings
from ingest.latest_readings import rebuild as rebuild_latest
from tests.api.seed import NOW, seed_city


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    seed_city(database_url)
    with TestClient(create_app(Settings(database_url=database_url, admin_token="s3cret"))) as client:
        yield client


def test_latest_map_has_one_feature_per_fresh_device_with_coordinates(http: TestClient) -> None:
    fc = http.get("/v1/latest", params={"metric": "pm25"}).json()
    by_id = {f["id"]: f for f in fc["features"]}
    assert set(by_id) == {"box-a", "box-b"}
    assert by_id["box-a"]["geometry"]["coordinates"] == [121.54, 25.02]
    assert by_id["box-b"]["properties"]["value"] == 20.0


def test_latest_rejects_an_unknown_metric_with_a_readable_reason(http: TestClient) -> None:
    r = http.get("/v1/latest", params={"metric": "ozone"})
    assert r.status_code == 422 and "unknown metric 'ozone'" in r.json()["detail"]


def test_readings_range_and_paging(http: TestClient) -> None:
    start = (NOW - timedelta(minutes=59, seconds=30)).isoformat()
    page = http.get("/v1/readings", params={"device_id": "box-a", "metric": "pm25", "start": start, "limit": 50}).json()
    assert len(page["results"]) == 50 and page["meta"]["found"] == 60
    page2 = http.get(
        "/v1/readings", params={"device_id": "box-a", "metric": "pm25", "start": start, "limit": 50, "page": 2}
    ).json()
    assert len(page2["results"]) == 10


def test_readings_refuses_reversed_range(http: TestClient) -> None:
    r = http.get("/v1/readings", params={"device_id": "box-a", "start": NOW.isoformat(),
                                         "end": (NOW - timedelta(hours=1)).isoformat()})
    assert r.status_code == 422 and "must be before" in r.json()["detail"]


def test_readings_csv_export_has_header_and_all_rows(http: TestClient) -> None:
    r = http.get("/v1/readings", params={"device_id": "box-b", "format": "csv",
                                         "start": (NOW - timedelta(hours=4)).isoformat()})
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["time", "metric", "value", "raw", "flags", "calibration_id"]
    assert len(rows) == 1 + 360


def test_hourly_series_reports_coverage(http: TestClient) -> None:
    body = http.get("/v1/series", params={"device_id": "box-a", "metric": "pm25", "bucket": "1h",
                                          "start": (NOW - timedelta(hours=6)).isoformat()}).json()
    counts = [r["count"] for r in body["results"]]
    assert sum(counts) == 180
    full = [r for r in body["results"] if r["count"] == 60]
    assert full and all(r["coverage"] == 1.0 and r["avg"] == 10.0 for r in full)


def test_school_export_is_wide_csv(http: TestClient) -> None:
    r = http.get("/v1/export/school.csv", params={"school": "Da'an Elementary",
                                                  "start": (NOW - timedelta(hours=4)).isoformat()})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 360 and {row["device_id"] for row in rows} == {"box-a", "box-b"}
    assert rows[0]["rh"] == "60.0"
    assert http.get("/v1/export/school.csv", params={"school": "Nowhere"}).status_code == 404


def test_parking_zone_availability_uses_newest_event(http: TestClient) -> None:
    zones = http.get("/v1/parking/zones").json()["results"]
    assert zones == [zones[0]] and zones[0]["zone"] == "ximen"
    assert (zones[0]["bays"], zones[0]["occupied"], zones[0]["free"]) == (2, 1, 1)


def test_admin_registration_needs_the_token_and_returns_credentials(http: TestClient) -> None:
    body = {"device_id": "new-box-1", "school": "Da'an Elementary", "lat": 25.0, "lon": 121.5}
    assert http.post("/v1/devices", json=body).status_code == 401
    r = http.post("/v1/devices", json=body, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 201 and r.json()["mqtt"]["username"] == "new-box-1"
    assert http.get("/v1/devices/new-box-1").json()["registered"] is True
    bad = http.post("/v1/devices", json={"device_id": "UPPER"}, headers={"Authorization": "Bearer s3cret"})
    assert bad.status_code == 422 and "device_id" in bad.json()["detail"]


def test_stream_sends_server_sent_events(http: TestClient) -> None:
    since = (NOW - timedelta(minutes=30)).isoformat()
    with http.stream("GET", "/v1/stream", params={"metric": "pm25", "max_events": 3, "since": since}) as r:
        text = "".join(r.iter_text())
    assert text.count("event: reading") == 3


def test_health_says_which_backend(http: TestClient, backend: str) -> None:
    body = http.get("/v1/health").json()
    assert body["backend"] == backend and body["devices"] == 5


def test_map_page_and_reference_endpoints(http: TestClient) -> None:
    assert "citysense" in http.get("/map").text
    assert any(f["name"] == "NO_CLOCK" for f in http.get("/v1/flags").json()["results"])
    assert {s["key"] for s in http.get("/v1/aqi/scales").json()} == {"us_epa_2024", "tw_moenv_2025"}


def test_latest_map_is_cached_for_its_ttl_and_fresh_without_cache(database_url: str) -> None:
    seed_city(database_url)
    add = "INSERT INTO readings (time, device_id, metric, raw, value, flags) VALUES (now(), %s, 'pm25', 1, 1, 0)"
    with TestClient(create_app(Settings(database_url=database_url, api_latest_cache_s=60))) as cached:
        first = cached.get("/v1/latest").json()
        with psycopg.connect(database_url) as conn:
            conn.execute(add, ["box-c"])
            rebuild_latest(conn)
        second = cached.get("/v1/latest")
        assert second.json() == first and second.headers["cache-control"] == "public, max-age=60"
    with TestClient(create_app(Settings(database_url=database_url, api_latest_cache_s=0))) as fresh:
        assert "box-c" in {f["id"] for f in fresh.get("/v1/latest").json()["features"]}


def test_school_export_matches_the_name_in_any_case_and_rounds_to_each_metrics_precision(
    http: TestClient, database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE readings SET value = 21.999575999999998 WHERE device_id = 'box-a' AND metric = 'pm25'")
    r = http.get("/v1/export/school.csv", params={"school": "DA'AN elementary",
                                                  "start": (NOW - timedelta(hours=4)).isoformat()})
    assert r.status_code == 200
    rows = [row for row in csv.DictReader(io.StringIO(r.text)) if row["device_id"] == "box-a"]
    assert rows and {row["pm25"] for row in rows} == {"22.0"}


def test_series_of_an_unknown_device_is_a_404_like_every_other_route(http: TestClient) -> None:
    r = http.get("/v1/series", params={"device_id": "no-such-box", "metric": "pm25"})
    assert r.status_code == 404 and "no-such-box" in r.json()["detail"]
    assert http.get("/v1/series", params={"device_id": "box-c", "metric": "t"}).status_code == 200  # known, empty
