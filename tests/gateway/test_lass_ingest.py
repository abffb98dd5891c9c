"""LASS devices publish each reading twice (LASS/Test/PM25 and LASS/Test/PM25/<device_id>):
through a real broker and gateway it is stored once, with a trusted clock or without, and
also when two gateways on a shared subscription each get one of the copies."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from devtools.ports import free_port
from tests.conftest import count, wait_until
from tests.fault_tools import publish, scrape
from tests.gateway.codecs.test_lass_codec import LASS_0_7_10


def test_lass_reading_published_on_both_topics_is_stored_once(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    gw = start_gateway(mosquitto.url, database_url)
    wait_until(lambda: "event=mqtt_connected" in gw.log(), 20, what="gateway MQTT session")
    time.sleep(0.5)
    now = datetime.now(UTC)
    fresh = LASS_0_7_10.replace(b"device_id=FT1_035", b"device_id=FT1_036").replace(
        b"date=2015-11-22|time=06:26:30", now.strftime("date=%Y-%m-%d|time=%H:%M:%S").encode()
    )
    # the 2015 clock is distrusted (receive time used): only the gateway's memory of the payload
    # can tell the second copy; the fresh one is caught by the unique key as well
    publish(mosquitto.port, {"LASS/Test/PM25": [LASS_0_7_10, fresh]})
    publish(mosquitto.port, {"LASS/Test/PM25/FT1_035": [LASS_0_7_10], "LASS/Test/PM25/FT1_036": [fresh]})
    per_line = 8  # s_0, s_1, s_2, s_3 (kept raw), s_d0, s_t0, s_h0, s_d1
    wait_until(lambda: count(database_url, "SELECT count(DISTINCT device_id) FROM readings") == 2, 30,
               what="both LASS devices")
    time.sleep(2.0)
    rows = {d: count(database_url, "SELECT count(*) FROM readings WHERE device_id = %s", d)
            for d in ("FT1_035", "FT1_036")}
    assert rows == {"FT1_035": per_line, "FT1_036": per_line}
    assert count(database_url, "SELECT count(*) FROM devices WHERE device_id = 'FT1_035' AND kind = 'lass' "
                               "AND lat = 24.353619 AND lon = 120.523148") == 1


def test_lass_copies_dealt_to_two_shared_gateways_are_stored_once(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    """Without a trusted clock only the payload tells a copy; each gateway sees about half of
    the copies, so only a memory both share (payload digests in the database) stores each once."""
    ports = [free_port(), free_port()]
    pair = [
        start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=f"lass-shared-{i}",
                      CITYSENSE_MQTT_SHARED_GROUP="citysense", CITYSENSE_GATEWAY_METRICS_PORT=str(port),
                      CITYSENSE_BATCH_MAX_DELAY_MS="20")
        for i, port in enumerate(ports)
    ]
    for gw in pair:
        wait_until(lambda g=gw: "event=mqtt_subscribed" in g.log(), 20, what="gateway subscribed")  # type: ignore[misc]
    devices = [f"FT1_{n:03d}" for n in range(100, 160)]
    lines = [LASS_0_7_10.replace(b"device_id=FT1_035", f"device_id={d}".encode()) for d in devices]
    # the 2015 clock is distrusted: the receive time is used, so the copies differ in time
    publish(mosquitto.port, {"LASS/Test/PM25": lines, **{f"LASS/Test/PM25/{d}": [x] for d, x in zip(devices, lines)}})
    wait_until(lambda: count(database_url, "SELECT count(DISTINCT device_id) FROM readings") == len(devices), 30,
               what="every LASS device")
    wait_until(lambda: sum(scrape(p, "citysense_gateway_messages_acked_total") for p in ports) >= 2 * len(devices),
               30, what="both copies of every line acknowledged")
    acked = [scrape(p, "citysense_gateway_messages_acked_total") for p in ports]
    assert min(acked) >= len(devices) * 0.3, f"one gateway took almost nothing: {acked}"
    per_line = 8  # s_0, s_1, s_2, s_3 (kept raw), s_d0, s_t0, s_h0, s_d1
    assert count(database_url, "SELECT count(*) FROM readings") == per_line * len(devices)
    assert count(database_url, "SELECT count(*) FROM payload_digests") == len(devices)
