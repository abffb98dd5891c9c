"""No device speaks for another: LASS lines never write into citysense hardware, a device
publishes only under its own kind, and a closed network stores nothing of an unknown device."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from ingest.device_store import register_device
from tests.conftest import count, wait_until
from tests.fault_tools import publish


def _register(database_url: str, device_id: str, kind: str) -> None:
    register_device(database_url, device_id=device_id, kind=kind, name=None, school=None, lat=None, lon=None,
                    sensor_type=None, owner="test", token="tok")


def _lass_line(device_id: str) -> bytes:
    now = datetime.now(UTC)
    return (f"|ver_format=3|app=PM25|ver_app=0.7.10|device_id={device_id}|"
            f"date={now:%Y-%m-%d}|time={now:%H:%M:%S}|s_d0=999.00|s_t0=25.0|s_h0=60.0|").encode()


def _reasons(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute("SELECT reason FROM rejected_messages ORDER BY received_at")]


def test_a_lass_line_naming_a_registered_citysense_device_is_dead_lettered(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    _register(database_url, "ns-box-1", "airbox")
    start_gateway(mosquitto.url, database_url).wait_subscribed()
    publish(mosquitto.port, {"LASS/Test/PM25/live": [_lass_line("ns-box-1")]})
    wait_until(lambda: count(database_url, "SELECT count(*) FROM rejected_messages") == 1, 20, what="a dead letter")
    assert "LASS id 'ns-box-1' names a citysense airbox" in _reasons(database_url)[0]
    assert count(database_url, "SELECT count(*) FROM readings") == 0


def test_a_lass_line_is_refused_in_closed_mode_too_and_an_own_lass_device_is_stored(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    _register(database_url, "ns-box-2", "airbox")
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO devices (device_id, kind, registered) VALUES ('FT1_900', 'lass', true)")
    start_gateway(mosquitto.url, database_url, CITYSENSE_ACCEPT_UNKNOWN_DEVICES="false").wait_subscribed()
    publish(mosquitto.port, {"LASS/Test/PM25/live": [_lass_line("ns-box-2"), _lass_line("FT1_900")]})
    wait_until(lambda: count(database_url, "SELECT count(*) FROM readings WHERE device_id = 'FT1_900'") > 0, 20,
               what="the LASS device's readings")
    wait_until(lambda: count(database_url, "SELECT count(*) FROM rejected_messages") == 1, 20, what="a dead letter")
    assert "names a citysense airbox" in _reasons(database_url)[0]
    assert count(database_url, "SELECT count(*) FROM readings WHERE device_id = 'ns-box-2'") == 0


def test_an_airbox_cannot_publish_as_a_parking_sensor_nor_a_lass_device_on_citysense_topics(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    _register(database_url, "ns-box-3", "airbox")
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO devices (device_id, kind) VALUES ('ns-lass-1', 'lass')")
    start_gateway(mosquitto.url, database_url).wait_subscribed()
    ts = int(time.time()) - 60
    parking = orjson.dumps({"v": 1, "id": "ns-box-3", "seq": 1, "ts": ts, "ev": "change", "m": {"occupied": 1}})
    airbox = orjson.dumps({"v": 1, "id": "ns-lass-1", "seq": 1, "ts": ts, "m": {"pm25": 5.0}})
    publish(mosquitto.port, {
        "citysense/v1/parking/ns-box-3/up": [parking], "citysense/v1/airbox/ns-lass-1/up": [airbox],
    })
    wait_until(lambda: count(database_url, "SELECT count(*) FROM rejected_messages") == 2, 20, what="two dead letters")
    reasons = " | ".join(_reasons(database_url))
    assert "device 'ns-box-3' is registered as airbox, not parking" in reasons
    assert "device 'ns-lass-1' is a LASS device" in reasons
    assert count(database_url, "SELECT count(*) FROM parking_events") == 0
    assert count(database_url, "SELECT count(*) FROM readings") == 0


def test_closed_mode_dead_letters_the_status_of_an_unknown_device(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    start_gateway(mosquitto.url, database_url, CITYSENSE_ACCEPT_UNKNOWN_DEVICES="false").wait_subscribed()
    status = orjson.dumps({"online": True, "fw": "1.0.0", "rssi": -60})
    publish(mosquitto.port, {"citysense/v1/airbox/ns-stranger/status": [status]})
    wait_until(lambda: count(database_url, "SELECT count(*) FROM rejected_messages") == 1, 20, what="a dead letter")
    assert "device 'ns-stranger' is not registered" in _reasons(database_url)[0]
    assert count(database_url, "SELECT count(*) FROM devices WHERE device_id = 'ns-stranger'") == 0
