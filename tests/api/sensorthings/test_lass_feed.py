"""The LASS feeds: the envelope, gzip, the history shape, and a round trip through our own LASS
decoder (gateway.codecs.lass): each feed, written back as the `|key=value|` message a box sends,
decodes to exactly the raw readings and position stored."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import psycopg
from fastapi.testclient import TestClient

from gateway.codecs.lass import decode_lass
from tests.api.sensorthings.seed import MINUTES, NOW

SENSOR_FIELDS = ("s_d0", "s_d1", "s_d2", "s_t0", "s_h0")


def _as_lass_message(feed: dict) -> bytes:  # type: ignore[type-arg]
    keys = ["device_id", "date", "time", "gps_lat", "gps_lon", *[k for k in SENSOR_FIELDS if k in feed]]
    return ("|" + "|".join(f"{k}={feed[k]}" for k in keys) + "|").encode()


def test_last_all_airbox_is_the_lass_envelope_with_calibrated_pm25(http: TestClient) -> None:
    body = http.get("/lass/last-all-airbox.json").json()
    assert {"source", "num_of_records", "feeds", "version", "descriptions"} <= set(body)
    assert body["num_of_records"] == len(body["feeds"]) == 2  # box-c is stale, park-1 is not an air box
    feed = {f["device_id"]: f for f in body["feeds"]}["box-a"]
    assert (feed["s_d0"], feed["c_d0"], feed["c_d0_method"]) == (20, 10.0, "linear")
    assert feed["SiteName"] == "Roof" and feed["area"] == "大安區, 臺北市" and feed["app"] == "citysense"
    assert feed["timestamp"] == NOW.strftime("%Y-%m-%dT%H:%M:%SZ") and feed["date"] == NOW.strftime("%Y-%m-%d")


def test_gzip_feed_is_the_same_document(http: TestClient) -> None:
    r = http.get("/lass/last-all-airbox.json.gz")
    assert r.headers["content-type"] == "application/gzip"
    plain = http.get("/lass/last-all-airbox.json").json()
    zipped = json.loads(gzip.decompress(r.content))
    assert zipped["feeds"] == plain["feeds"]


def test_feed_round_trips_through_our_lass_decoder(http: TestClient, database_url: str) -> None:
    feeds = http.get("/lass/last-all-airbox.json").json()["feeds"]
    with psycopg.connect(database_url) as conn:
        for feed in feeds:
            decoded = decode_lass("LASS/Test/PM25", _as_lass_message(feed), NOW.timestamp())
            assert decoded.device_id == feed["device_id"] and decoded.location == (feed["gps_lat"], feed["gps_lon"])
            stored = conn.execute(
                "SELECT extract(epoch FROM time)::float8, metric, raw FROM readings WHERE device_id = %s "
                "AND time = %s::timestamptz ORDER BY metric", (feed["device_id"], feed["timestamp"])).fetchall()
            got = sorted((t, metric, raw) for t, _dev, metric, raw, *_ in decoded.readings)
            assert sorted((float(t), m, r) for t, m, r in stored) == [(t, m, r) for t, m, r in got]


def test_history_is_the_lass_history_shape(http: TestClient) -> None:
    start = (NOW - timedelta(minutes=9)).isoformat()
    body = http.get("/lass/device/box-b/history.json", params={"start": start}).json()
    assert body["device_id"] == "box-b" and body["num_of_records"] == 10
    records = body["feeds"][0]["citysense"]
    (stamp, fields), = records[-1].items()
    assert stamp == fields["timestamp"] and fields["s_d0"] == 40 and fields["c_d0"] == 20.0
    whole = http.get("/lass/device/box-b/history.json",
                     params={"start": (NOW - timedelta(hours=3)).isoformat()}).json()
    assert whole["num_of_records"] == MINUTES


def test_history_of_an_unknown_device_is_404_and_a_long_range_422(http: TestClient) -> None:
    assert http.get("/lass/device/nope/history.json").status_code == 404
    r = http.get("/lass/device/box-a/history.json", params={"start": (NOW - timedelta(days=40)).isoformat()})
    assert r.status_code == 422 and "31 days" in r.json()["detail"]
