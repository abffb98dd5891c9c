"""The gateway's /metrics tell the truth: received counts refusals too, the session gauge moves,
and reason labels stay bounded whatever ids strangers make up."""

from __future__ import annotations

import time
from typing import Any

import orjson

from devtools.ports import free_port
from gateway.telemetry import BoundedLabels, reason_label
from tests.conftest import wait_until
from tests.fault_tools import publish, scrape


def test_reason_labels_leave_out_ids_and_numbers() -> None:
    assert reason_label("device 'made-up-0001' is not registered") == reason_label("device 'x' is not registered")
    assert reason_label("payload of 300000 bytes exceeds 262144") == "payload of N bytes exceeds N"
    assert reason_label('metric "pm25": not a number') == "metric …"


def test_reason_labels_stay_bounded_however_many_kinds_of_reason_arrive() -> None:
    labels = BoundedLabels(limit=5)
    seen = {labels.label(f"unquoted id box{chr(97 + k % 26)}{chr(97 + k // 26 % 26)} refused") for k in range(500)}
    assert len(seen) == 6 and "other" in seen
    assert labels.label("unquoted id boxaa refused") == "unquoted id boxaa refused"  # a known kind keeps its label


def test_received_counts_accepted_and_rejected_and_the_session_gauge_is_set(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    port = free_port()
    gw = start_gateway(mosquitto.url, database_url, CITYSENSE_GATEWAY_METRICS_PORT=str(port)).wait_subscribed()
    wait_until(lambda: scrape(port, "citysense_gateway_mqtt_connected") == 1.0, 10, what="the session gauge")
    ts = int(time.time()) - 60
    good = [orjson.dumps({"v": 1, "id": "tm-box-1", "seq": k, "ts": ts + k, "m": {"pm25": 5.0}}) for k in range(5)]
    publish(mosquitto.port, {"citysense/v1/airbox/tm-box-1/up": [*good, b"not json"]})
    wait_until(lambda: scrape(port, "citysense_gateway_messages_acked_total") >= 6, 20, what="6 acks")
    assert scrape(port, "citysense_gateway_messages_received_total") == 6.0
    assert gw.alive()
