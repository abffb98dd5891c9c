"""A registration, retirement or token change reaches a running gateway at once (LISTEN/NOTIFY),
and UNREGISTERED_DEVICE is set on every reading of an unregistered device and on none of a
registered one, against a real gateway, Mosquitto and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from contracts.flags import Flag
from gateway.device_registry import LISTENER_APPLICATION_NAME
from ingest.device_store import register_device, retire_device
from tests.conftest import count, wait_until

UNREGISTERED = int(Flag.UNREGISTERED_DEVICE)
REGISTRY_TTL_S = 60.0  # DeviceRegistry's default refresh: what a change waited for before NOTIFY


class Box:
    """One air box publishing payload v1 at QoS 1, with its own sequence and clock."""

    def __init__(self, port: int, device_id: str) -> None:
        self.device_id = device_id
        self.seq = 0
        self.t0 = int(time.time()) - 600
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{device_id}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self) -> float:
        """One reading (pm25 + rh); returns the `ts` it carries, which is its time in `readings`."""
        self.seq += 1
        ts = self.t0 + self.seq
        doc = {"v": 1, "id": self.device_id, "seq": self.seq, "ts": ts,
               "m": {"pm25": 30.0 + self.seq % 7, "rh": 70.0 + self.seq % 5}}
        self.client.publish(f"citysense/v1/airbox/{self.device_id}/up", orjson.dumps(doc), qos=1).wait_for_publish(10)
        return float(ts)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def readings_of(database_url: str, device_id: str) -> list[tuple[float, str, int, int | None]]:
    """(unix time, metric, flags, calibration_id) of each stored reading, oldest first."""
    with psycopg.connect(database_url) as conn:
        return [
            (float(r[0]), r[1], int(r[2]), r[3])
            for r in conn.execute(
                "SELECT extract(epoch FROM time), metric, flags, calibration_id FROM readings "
                "WHERE device_id = %s ORDER BY time, metric",
                (device_id,),
            ).fetchall()
        ]


def wait_readings(database_url: str, device_id: str, n: int) -> list[tuple[float, str, int, int | None]]:
    wait_until(
        lambda: count(database_url, "SELECT count(*) FROM readings WHERE device_id = %s", device_id) >= n, 30,
        what=f"{n} readings of {device_id}",
    )
    return readings_of(database_url, device_id)


def started(start_gateway: Any, mosquitto: Any, database_url: str, **extra: str) -> Any:
    gw = start_gateway(mosquitto.url, database_url, **extra).wait_subscribed()
    wait_until(lambda: "event=registry_listening" in gw.log(), 30, what="registry listening")
    return gw


def test_a_box_registered_just_before_it_publishes_is_calibrated_and_unflagged_from_its_first_reading(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    started(start_gateway, mosquitto, database_url)
    early, fresh = Box(mosquitto.port, "early-box"), Box(mosquitto.port, "fresh-box")
    try:
        # early-box published before its owner registered it: the gateway stored it as unregistered
        for _ in range(3):
            early.publish()
            time.sleep(0.3)  # one batch each
        before = wait_readings(database_url, "early-box", 6)
        assert all(flags & UNREGISTERED for _t, _m, flags, _c in before)
        assert all(cal is None for *_rest, cal in before)  # no sensor type, no calibration

        for box in (early, fresh):
            register_device(database_url, device_id=box.device_id, token="tok", school="Jianguo")
        firsts = {box.device_id: box.publish() for box in (early, fresh)}  # right after the commit
        for _ in range(2):
            for box in (early, fresh):
                box.publish()
        after = {
            box.device_id: [r for r in wait_readings(database_url, box.device_id, n) if r[0] >= firsts[box.device_id]]
            for box, n in ((early, 12), (fresh, 6))
        }
    finally:
        early.close()
        fresh.close()
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT id FROM calibrations WHERE device_id IS NULL AND sensor_type = 'pms5003' AND metric = 'pm25'"
        ).fetchone()
    assert found is not None
    default_id = found[0]
    for device_id, rows in after.items():
        assert len(rows) == 6, device_id
        assert [r for r in rows if r[2] & UNREGISTERED] == [], device_id
        assert [r[3] for r in rows if r[1] == "pm25"] == [default_id] * 3, device_id
        assert rows[0][0] == firsts[device_id]  # the very first reading after registration is among them


def test_every_reading_of_an_unregistered_box_is_flagged_in_every_batch(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    gw = started(start_gateway, mosquitto, database_url)
    box = Box(mosquitto.port, "stray-box")
    try:
        for _ in range(6):
            box.publish()
            time.sleep(0.25)  # longer than the batch delay: six batches
        rows = wait_readings(database_url, "stray-box", 12)
    finally:
        box.close()
    assert [r for r in rows if not r[2] & UNREGISTERED] == []
    assert count(database_url, "SELECT count(*) FROM devices WHERE device_id = 'stray-box' AND NOT registered") == 1
    assert gw.alive()


def _time_until_flagged(database_url: str, box: Box, change_at: float) -> float:
    """Publish every 50 ms after a change; seconds from the change to the publication of the
    first reading stored with UNREGISTERED_DEVICE (every later one must carry it too)."""
    published: dict[float, float] = {}  # ts -> when it was published
    while time.monotonic() < change_at + REGISTRY_TTL_S / 2:
        published[box.publish()] = time.monotonic()
        time.sleep(0.05)
        stored = [r for r in readings_of(database_url, box.device_id) if r[0] in published]
        flagged = sorted(r[0] for r in stored if r[2] & UNREGISTERED)
        if flagged:
            assert [r for r in stored if r[0] > flagged[0] and not r[2] & UNREGISTERED] == []
            return published[flagged[0]] - change_at
    raise AssertionError("the change did not reach the gateway within half the registry TTL")


def test_retirement_reaches_a_running_gateway_without_waiting_for_the_ttl(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    register_device(database_url, device_id="leaving-box", token="tok")
    started(start_gateway, mosquitto, database_url)
    box = Box(mosquitto.port, "leaving-box")
    try:
        box.publish()
        assert [r for r in wait_readings(database_url, "leaving-box", 2) if r[2] & UNREGISTERED] == []
        change_at = time.monotonic()
        retire_device(database_url, "leaving-box")
        took = _time_until_flagged(database_url, box, change_at)
    finally:
        box.close()
    print(f"open network: retirement reached the gateway in {took * 1000:.0f} ms")
    assert took < 2.0, f"retirement took {took:.2f} s to reach the gateway"


def test_closed_network_refuses_a_retired_box_without_waiting_for_the_ttl(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    register_device(database_url, device_id="closed-box", token="tok")
    started(start_gateway, mosquitto, database_url, CITYSENSE_ACCEPT_UNKNOWN_DEVICES="false")
    box = Box(mosquitto.port, "closed-box")
    try:
        box.publish()
        wait_readings(database_url, "closed-box", 2)
        change_at = time.monotonic()
        retire_device(database_url, "closed-box")
        refused = "SELECT count(*) FROM rejected_messages WHERE reason LIKE '%closed-box%not registered%'"
        while count(database_url, refused) == 0:
            assert time.monotonic() - change_at < REGISTRY_TTL_S / 2, "retirement never reached the gateway"
            box.publish()
            time.sleep(0.05)
        took = time.monotonic() - change_at
    finally:
        box.close()
    print(f"closed network: retirement reached the gateway in {took * 1000:.0f} ms")
    assert took < 2.0, f"retirement took {took:.2f} s to reach a closed gateway"


def test_registrations_made_while_the_listener_was_away_are_loaded_when_it_reconnects(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    gw = started(start_gateway, mosquitto, database_url)
    box = Box(mosquitto.port, "away-box")
    try:
        box.publish()
        assert all(r[2] & UNREGISTERED for r in wait_readings(database_url, "away-box", 2))
        with psycopg.connect(database_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                (LISTENER_APPLICATION_NAME,),
            ).fetchone()
        assert killed == (1,)
        # the listener waits before reconnecting: this registration's NOTIFY reaches nobody
        register_device(database_url, device_id="away-box", token="tok")
        wait_until(lambda: gw.log().count("event=registry_listening") >= 2, 15, what="listener reconnected")
        ts = box.publish()
        rows = [r for r in wait_readings(database_url, "away-box", 4) if r[0] == ts]
    finally:
        box.close()
    assert len(rows) == 2 and [r for r in rows if r[2] & UNREGISTERED] == []
    assert "event=registry_listener_lost" in gw.log()


def test_a_new_calibration_applies_from_the_next_reading(mosquitto: Any, database_url: str, start_gateway: Any) -> None:
    register_device(database_url, device_id="refit-box", token="tok")
    started(start_gateway, mosquitto, database_url)
    box = Box(mosquitto.port, "refit-box")
    try:
        box.publish()
        wait_readings(database_url, "refit-box", 2)
        with psycopg.connect(database_url) as conn:
            inserted = conn.execute(
                "INSERT INTO calibrations (device_id, metric, model) VALUES ('refit-box', 'pm25', "
                "'{\"type\": \"linear\", \"a\": 0.5, \"b\": 1.0}') RETURNING id"
            ).fetchone()
        assert inserted is not None
        ts = box.publish()
        rows = [r for r in wait_readings(database_url, "refit-box", 4) if r[0] == ts and r[1] == "pm25"]
    finally:
        box.close()
    assert [r[3] for r in rows] == [inserted[0]]
