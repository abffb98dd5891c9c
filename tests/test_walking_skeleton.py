"""End to end: real mosquitto, real PostgreSQL, the gateway process and the API."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api.app import create_app
from contracts.settings import Settings
from tests.conftest import count, wait_until

METRICS_PER_MESSAGE = 5


def _v1_line(i: int, base_ts: int) -> tuple[str, bytes]:
    device = f"mq-box-{i % 50:03d}"
    doc = {"v": 1, "id": device, "seq": i, "ts": base_ts + i // 50,
           "m": {"pm1": 5 + i % 7, "pm25": 10 + i % 13, "pm10": 15 + i % 17, "t": 24.5, "rh": 70.0}}
    return f"citysense/v1/airbox/{device}/up", orjson.dumps(doc)


def _publish_with_mosquitto_pub(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish with a client we did not write: one mosquitto_pub -l per topic."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, payload in messages:
        by_topic.setdefault(topic, []).append(payload)
    procs = []
    for topic, payloads in by_topic.items():
        proc = subprocess.Popen(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic, "-l"],
            stdin=subprocess.PIPE,
        )
        assert proc.stdin is not None
        proc.stdin.write(b"\n".join(payloads) + b"\n")
        proc.stdin.close()
        procs.append(proc)
    for proc in procs:
        assert proc.wait(60) == 0


def test_thousand_mosquitto_pub_messages_become_exact_rows_even_when_sent_twice(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    gw = start_gateway(mosquitto.url, database_url).wait_subscribed()
    base_ts = int(time.time()) - 3600
    messages = [_v1_line(i, base_ts) for i in range(1000)]
    _publish_with_mosquitto_pub(mosquitto.port, messages)
    expected = 1000 * METRICS_PER_MESSAGE
    wait_until(lambda: count(database_url, "SELECT count(*) FROM readings") >= expected, 60, what="1000 messages")
    _publish_with_mosquitto_pub(mosquitto.port, messages)
    # the gateway's graceful stop reports how many messages it committed: proof the
    # second thousand were processed (as duplicates), not merely still in flight
    time.sleep(2.0)
    assert gw.alive()
    assert gw.terminate() == 0
    assert "committed_messages=2000" in gw.log()
    assert count(database_url, "SELECT count(*) FROM readings") == expected
    assert count(database_url, "SELECT count(DISTINCT device_id) FROM readings") == 50


def test_malformed_payload_becomes_one_rejected_row_and_gateway_keeps_running(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    gw = start_gateway(mosquitto.url, database_url).wait_subscribed()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bad-publisher")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    truncated = b'{"v":1,"id":"bad-box-01","m":{"pm25":'
    client.publish("citysense/v1/airbox/bad-box-01/up", truncated, qos=1).wait_for_publish()
    good = {"v": 1, "id": "good-box-01", "seq": 1, "ts": int(time.time()), "m": {"pm25": 12.5}}
    client.publish("citysense/v1/airbox/good-box-01/up", orjson.dumps(good), qos=1).wait_for_publish()
    client.loop_stop()
    client.disconnect()
    wait_until(lambda: count(database_url, "SELECT count(*) FROM readings") == 1, 30, what="good reading")
    assert count(database_url, "SELECT count(*) FROM rejected_messages") == 1
    with __import__("psycopg").connect(database_url) as conn:
        topic, reason = conn.execute("SELECT topic, reason FROM rejected_messages").fetchone()
    assert topic == "citysense/v1/airbox/bad-box-01/up"
    assert "not valid JSON" in reason
    assert gw.alive()


def test_published_readings_are_served_by_the_api(mosquitto: Any, database_url: str, start_gateway: Any) -> None:
    start_gateway(mosquitto.url, database_url).wait_subscribed()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="api-publisher")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    now = int(time.time())
    for i in range(3):
        doc = {"v": 1, "id": f"api-box-{i}", "seq": 1, "ts": now - 60, "m": {"pm25": 10.0 + i, "rh": 60.0}}
        client.publish(f"citysense/v1/airbox/api-box-{i}/up", orjson.dumps(doc), qos=1).wait_for_publish()
    client.loop_stop()
    client.disconnect()
    wait_until(lambda: count(database_url, "SELECT count(*) FROM readings") == 6, 30, what="6 readings")
    settings = Settings(database_url=database_url)
    with TestClient(create_app(settings)) as http:
        health = http.get("/v1/health").json()
        assert health["status"] == "ok" and health["backend"] in ("postgresql", "timescaledb")
        assert health["newest_reading_age_s"] is not None
        latest = http.get("/v1/latest", params={"metric": "pm25"}).json()
        assert latest["type"] == "FeatureCollection"
        values = {f["id"]: f["properties"]["value"] for f in latest["features"]}
        assert values == {"api-box-0": 10.0, "api-box-1": 11.0, "api-box-2": 12.0}
        rows = http.get("/v1/readings", params={"device_id": "api-box-1", "metric": "pm25"}).json()
        assert [r["raw"] for r in rows["results"]] == [11.0]
        assert len(http.get("/v1/devices").json()["results"]) == 3
        bad = http.get("/v1/readings", params={"device_id": "api-box-1", "limit": 0})
        assert bad.status_code == 422 and "limit" in bad.json()["detail"]
