"""LASS devices publish each reading twice (LASS/Test/PM25 and LASS/Test/PM25/<device_id>):
through a real broker and gateway it is stored once, with a trusted clock or without."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.conftest import count, wait_until
from tests.fault_tools import publish
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
