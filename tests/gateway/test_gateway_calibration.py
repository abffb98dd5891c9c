"""The live gateway applies the active calibration and records which one, beside the raw value."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from calibration.models import parse_model
from ingest.device_store import register_device
from tests.conftest import count, wait_until


def test_gateway_stores_raw_value_and_calibration_id_per_reading(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    for dev in ("cal-box-default", "cal-box-own"):
        register_device(database_url, device_id=dev, kind="airbox", name=None, school=None, lat=None, lon=None,
                        sensor_type="pms5003", owner="test", token="t")
    with psycopg.connect(database_url) as conn:
        inserted = conn.execute(
            "INSERT INTO calibrations (device_id, metric, model) VALUES ('cal-box-own', 'pm25', "
            "'{\"type\": \"linear\", \"a\": 0.5, \"b\": 1.0}') RETURNING id"
        ).fetchone()
        assert inserted is not None
        own_id = inserted[0]
    start_gateway(mosquitto.url, database_url).wait_subscribed()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cal-publisher")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    now = int(time.time())
    for dev in ("cal-box-default", "cal-box-own"):
        doc = {"v": 1, "id": dev, "seq": 1, "ts": now - 30, "m": {"pm25": 40.0, "rh": 80.0}}
        client.publish(f"citysense/v1/airbox/{dev}/up", orjson.dumps(doc), qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    wait_until(lambda: count(database_url, "SELECT count(*) FROM readings") == 4, 30, what="4 readings")
    with psycopg.connect(database_url) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT device_id, raw, value, calibration_id FROM readings WHERE metric = 'pm25'"
            ).fetchall()
        }
        default = conn.execute(
            "SELECT id, model FROM calibrations WHERE device_id IS NULL AND sensor_type = 'pms5003'"
        ).fetchone()
        assert default is not None
        default_id, spec = default
    expected_default = float(parse_model(spec).apply(np.array([40.0]), np.array([80.0]))[0])
    assert rows["cal-box-default"] == (40.0, expected_default, default_id)
    assert expected_default < 40.0  # the EPA correction lowers a humid PMS5003 reading
    assert rows["cal-box-own"] == (40.0, 21.0, own_id)
