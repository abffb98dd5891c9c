"""LoRaWAN parking sensors through ChirpStack v4's MQTT integration, against a real gateway,
Mosquitto and PostgreSQL: a ChirpStack-shaped uplink becomes one parking event of the device
that holds its devEui, a redelivery adds nothing, and an uplink no device can take is
dead-lettered with the reason."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from ingest.device_store import DeviceFields, register_device, update_device
from tests.conftest import count, wait_until
from tests.fault_tools import publish
from tests.gateway.codecs.test_chirpstack_codec import DEV_EUI, chirpstack_status, chirpstack_topic, chirpstack_uplink

BAY = "bay-lora-0042"


def _register_bay(database_url: str, dev_eui: str = DEV_EUI) -> None:
    register_device(database_url, device_id=BAY, token="t" * 32, kind="parking", dev_eui=dev_eui.upper())


def _started(gw: Any) -> Any:
    wait_until(lambda: "event=mqtt_subscribed" in gw.log(), 20, what="gateway subscribed")
    return gw


def test_chirpstack_uplink_becomes_one_parking_event_with_its_radio_quality(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    _register_bay(database_url)
    _started(start_gateway(mosquitto.url, database_url))
    dedup = str(uuid.uuid4())
    sent_at = datetime.now(UTC) - timedelta(seconds=30)
    # nanoseconds, as ChirpStack writes them
    uplink_time = sent_at.isoformat(timespec="microseconds").replace("+00:00", "123+00:00")
    publish(mosquitto.port, {chirpstack_topic(): [chirpstack_uplink(deduplication_id=dedup, time=uplink_time)]})
    wait_until(lambda: count(database_url, "SELECT count(*) FROM parking_events") == 1, 20, what="the parking event")
    with psycopg.connect(database_url) as conn:
        event = conn.execute(
            "SELECT device_id, occupied, mag, batt_mv, temp, ev, flags, extract(epoch FROM time) FROM parking_events"
        ).fetchone()
        uplink = conn.execute(
            "SELECT deduplication_id::text, device_id, dev_eui, f_cnt, f_port, rssi, snr, gateway_id, gateways "
            "FROM lorawan_uplinks"
        ).fetchone()
    assert event is not None and event[:7] == (BAY, True, 41.2, 3012, 21.5, "change", 0)
    assert abs(float(event[7]) - sent_at.timestamp()) < 1e-5  # ChirpStack's time, not the receive time
    assert uplink == (dedup, BAY, DEV_EUI, 42, 10, -97, 4.25, "0016c001f153a14c", 2)


def test_a_redelivered_uplink_is_one_parking_event(mosquitto: Any, database_url: str, start_gateway: Any) -> None:
    """Twice at once (two copies in one batch, or two batches) and again once stored: one event.
    Without `time` the receive time is used, so only the deduplicationId can tell the copies."""
    _register_bay(database_url)
    _started(start_gateway(mosquitto.url, database_url))
    same = chirpstack_uplink(deduplication_id=str(uuid.uuid4()), time=None)
    publish(mosquitto.port, {chirpstack_topic(): [same, same]})
    wait_until(lambda: count(database_url, "SELECT count(*) FROM lorawan_uplinks") == 1, 20, what="the uplink")
    time.sleep(1.5)  # a second later: a receive-time key would differ now
    publish(mosquitto.port, {chirpstack_topic(): [same]})
    other = chirpstack_uplink(deduplication_id=str(uuid.uuid4()), time=None)
    publish(mosquitto.port, {chirpstack_topic(): [other]})  # a new uplink still goes through
    wait_until(lambda: count(database_url, "SELECT count(*) FROM lorawan_uplinks") == 2, 20, what="the second uplink")
    time.sleep(1.0)
    assert count(database_url, "SELECT count(*) FROM parking_events") == 2
    assert count(database_url, "SELECT count(*) FROM rejected_messages") == 0


def test_uplink_of_an_unknown_dev_eui_or_a_bad_frame_is_dead_lettered(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    _register_bay(database_url)
    _started(start_gateway(mosquitto.url, database_url))
    stranger = "0004a30b001c0530"
    publish(mosquitto.port, {
        chirpstack_topic(stranger): [chirpstack_uplink(dev_eui=stranger)],
        chirpstack_topic(): [chirpstack_uplink(bytes([0x10, 0x03]))],
    })
    wait_until(lambda: count(database_url, "SELECT count(*) FROM rejected_messages") == 2, 20, what="two dead letters")
    with psycopg.connect(database_url) as conn:
        reasons: dict[str, str] = dict(conn.execute("SELECT topic, reason FROM rejected_messages").fetchall())
    assert "devEui 0004a30b001c0530 belongs to no device" in reasons[chirpstack_topic(stranger)]
    assert "parking frame is 2 bytes" in reasons[chirpstack_topic()]
    assert count(database_url, "SELECT count(*) FROM parking_events") == 0
    assert count(database_url, "SELECT count(*) FROM devices WHERE device_id <> %s", BAY) == 0  # no device made up


def test_a_dev_eui_given_to_a_running_gateways_device_is_honoured_at_once(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    """`citysense device update --dev-eui` after the gateway loaded its registry: the next uplink is
    the device's, not dead-lettered until the registry's TTL refresh (NOTIFY, or the lookup of a missed EUI)."""
    register_device(database_url, device_id=BAY, token="t" * 32, kind="parking")
    gw = _started(start_gateway(mosquitto.url, database_url))
    wait_until(lambda: "event=registry_listening" in gw.log(), 20, what="registry listener")
    update_device(database_url, BAY, DeviceFields(dev_eui=DEV_EUI))
    time.sleep(0.5)
    publish(mosquitto.port, {chirpstack_topic(): [chirpstack_uplink()]})
    wait_until(lambda: count(database_url, "SELECT count(*) FROM parking_events WHERE device_id = %s", BAY) == 1, 20,
               what="the event under the device that now holds the EUI")


def test_an_uplink_its_redelivery_and_a_status_event_give_one_event_and_one_status(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    """The issue's case: on a real broker, exactly one parking event and one status row, with the battery."""
    _register_bay(database_url)
    _started(start_gateway(mosquitto.url, database_url))
    uplink, status = chirpstack_uplink(deduplication_id=str(uuid.uuid4())), chirpstack_status(battery=64.0)
    publish(mosquitto.port, {chirpstack_topic(): [uplink, uplink], chirpstack_topic(event="status"): [status, status]})
    wait_until(lambda: count(database_url, "SELECT count(*) FROM device_status") == 1, 20, what="the status")
    wait_until(lambda: count(database_url, "SELECT count(*) FROM parking_events") == 1, 20, what="the event")
    time.sleep(1.0)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT device_id, online, status ->> 'batteryLevel', status ->> 'event' "
                           "FROM device_status").fetchone()
    assert row == (BAY, True, "64.0", "status")
    assert count(database_url, "SELECT count(*) FROM parking_events") == 1
    assert count(database_url, "SELECT count(*) FROM rejected_messages") == 0
