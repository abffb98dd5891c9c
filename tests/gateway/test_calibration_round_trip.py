"""Live calibration and `citysense calibrate apply` agree: re-applying to what the gateway stored
changes nothing (real Mosquitto, PostgreSQL and gateway process)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from citysense.calibrate_cli import app
from contracts.settings import get_settings
from gateway.calibration_step import Calibrator
from ingest.calibration_store import insert_calibration
from ingest.device_store import register_device
from tests.conftest import count, wait_until

DEVICE = "round-trip-box"
PM25_SENT = (12, 65535, -999, 35.5, 0, 1500, 8.2, -1, 250)
MESSAGES = 60
METRICS = ("pm25", "pm10", "t", "rh")
SNAPSHOT = "SELECT time, metric, raw, value, flags, calibration_id FROM readings ORDER BY time, metric"


@pytest.fixture
def cli_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CITYSENSE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def _stream_times() -> list[int]:
    start = int(time.time()) - 3600
    return [start + 10 * i for i in range(MESSAGES)]


def _publish(port: int, times: list[int]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="round-trip-publisher")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for i, ts in enumerate(times):
        m = {"pm25": PM25_SENT[i % len(PM25_SENT)], "pm10": 20.0 + i, "t": -5.5 + 2.0 * i / (MESSAGES - 1),
             "rh": 60.0 + i % 20}
        doc = {"v": 1, "id": DEVICE, "seq": i + 1, "ts": ts, "m": m}
        client.publish(f"citysense/v1/airbox/{DEVICE}/up", orjson.dumps(doc), qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def _apply_every_metric(since: int) -> list[int]:
    """`citysense calibrate apply` for each metric; the number of changed rows of each."""
    changed = []
    for metric in METRICS:
        iso = datetime.fromtimestamp(since, UTC).isoformat()
        result = CliRunner().invoke(app, ["apply", "--device", DEVICE, "--since", iso, "--metric", metric])
        assert result.exit_code == 0, result.output
        found = re.search(r"(\d+) rows checked, (\d+) changed", result.output)
        assert found is not None, result.output
        assert int(found.group(1)) == MESSAGES, result.output
        changed.append(int(found.group(2)))
    return changed


def _run(mosquitto: Any, database_url: str, start_gateway: Any, times: list[int]) -> list[tuple[Any, ...]]:
    start_gateway(mosquitto.url, database_url).wait_subscribed()
    _publish(mosquitto.port, times)
    expected = MESSAGES * len(METRICS)
    wait_until(lambda: count(database_url, "SELECT count(*) FROM readings") == expected, 30, what="all readings")
    with psycopg.connect(database_url) as conn:
        return conn.execute(SNAPSHOT).fetchall()


def _register(database_url: str) -> None:
    register_device(database_url, device_id=DEVICE, kind="airbox", name=None, school=None, lat=None, lon=None,
                    sensor_type="pms5003", owner="test", token="t")


def test_recalibrating_what_the_gateway_stored_changes_nothing(
    mosquitto: Any, cli_database: str, start_gateway: Any
) -> None:
    database_url = cli_database
    _register(database_url)
    with psycopg.connect(database_url) as conn:
        own_t = insert_calibration(conn, metric="t", model={"type": "linear", "a": 1.02, "b": -0.3}, device_id=DEVICE)
        insert_calibration(conn, metric="pm10", model={"type": "linear", "a": 0.8, "b": -2.0}, device_id=DEVICE)
        insert_calibration(conn, metric="rh", model={"type": "linear", "a": 0.9, "b": 1.0}, sensor_type="pms5003")
    times = _stream_times()
    live = _run(mosquitto, database_url, start_gateway, times)

    assert _apply_every_metric(times[0]) == [0, 0, 0, 0]
    with psycopg.connect(database_url) as conn:
        assert conn.execute(SNAPSHOT).fetchall() == live, "stored rows identical after calibrate apply"
    pm25 = [r for r in live if r[1] == "pm25"]
    sentinels = [r for r in pm25 if r[2] in (65535.0, -999.0, -1.0)]
    assert len(sentinels) == 20 and all(r[3] is None and r[5] is None for r in sentinels)
    out_of_range = [r for r in pm25 if r[2] == 1500.0]
    assert out_of_range and all(r[3] is None for r in out_of_range)
    assert all(r[3] is not None and r[5] is not None for r in pm25 if r not in sentinels + out_of_range)
    temperatures = [r for r in live if r[1] == "t"]
    assert all(r[3] is not None and r[3] < 0 and r[5] == own_t for r in temperatures)
    assert all(r[3] == pytest.approx(1.02 * r[2] - 0.3) for r in temperatures)


def test_a_model_valid_from_the_middle_of_the_stream_applies_to_its_half_on_both_paths(
    mosquitto: Any, cli_database: str, start_gateway: Any
) -> None:
    database_url = cli_database
    _register(database_url)
    times = _stream_times()
    switch = datetime.fromtimestamp(times[MESSAGES // 2], UTC)
    with psycopg.connect(database_url) as conn:
        early = insert_calibration(conn, metric="pm25", model={"type": "linear", "a": 0.5, "b": 1.0}, device_id=DEVICE)
        late = insert_calibration(
            conn, metric="pm25", model={"type": "linear", "a": 2.0, "b": 0.0}, device_id=DEVICE, valid_from=switch
        )
    live = _run(mosquitto, database_url, start_gateway, times)

    assert _apply_every_metric(times[0]) == [0, 0, 0, 0]
    with psycopg.connect(database_url) as conn:
        assert conn.execute(SNAPSHOT).fetchall() == live
    valued = [r for r in live if r[1] == "pm25" and r[3] is not None]
    assert {r[5] for r in valued if r[0] < switch} == {early}
    assert {r[5] for r in valued if r[0] >= switch} == {late}
    assert all(r[3] == pytest.approx(2.0 * r[2] if r[0] >= switch else 0.5 * r[2] + 1.0) for r in valued)


def test_forget_makes_the_next_batch_use_a_calibration_stored_since(database_url: str) -> None:
    _register(database_url)
    calibrator = Calibrator(database_url)
    asyncio.run(calibrator.refresh())
    now = float(int(time.time()))
    reading = (now, DEVICE, "pm25", 10.0, 10.0, 0, None)
    default = calibrator.apply([reading])[0]
    assert default[6] is not None, "the sensor type's default applies first"
    with psycopg.connect(database_url) as conn:
        own = insert_calibration(conn, metric="pm25", model={"type": "linear", "a": 3.0, "b": 0.0}, device_id=DEVICE)
    assert calibrator.apply([reading])[0] == default, "cached until told"
    calibrator.forget(DEVICE)
    asyncio.run(calibrator.reload_forgotten())
    assert calibrator.apply([reading])[0][4:] == (30.0, 0, own)
    with psycopg.connect(database_url) as conn:
        newer = insert_calibration(
            conn, metric="pm25", model={"type": "identity"}, device_id=DEVICE,
            valid_from=datetime.fromtimestamp(now - 60, UTC),
        )
    calibrator.forget(None)
    asyncio.run(calibrator.reload_forgotten())
    assert calibrator.apply([reading])[0][4:] == (10.0, 0, newer)
