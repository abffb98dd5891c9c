"""Commit receipts: after a batch commits, each device hears the highest seq stored, and only that."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import count, wait_until
from tests.fault_tools import airbox_payloads, publish


class ReceiptListener:
    """A device's view: every receipt it is sent on its own topic (retained ones included)."""

    def __init__(self, port: int, topic: str) -> None:
        self.seqs: list[int] = []
        self.retained: list[bool] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listen-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.seqs.append(int(orjson.loads(msg.payload)["seq"]))
            self.retained.append(bool(msg.retain))

    def highest(self) -> int:
        with self._lock:
            return max(self.seqs, default=-1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_device_hears_the_highest_seq_stored_coalesced_and_never_a_refused_one(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    device, topic = "rcpt-box-1", "citysense/v1/airbox/rcpt-box-1/up"
    start_gateway(mosquitto.url, database_url, CITYSENSE_RECEIPT_INTERVAL_S="1").wait_subscribed()
    listener = ReceiptListener(mosquitto.port, "citysense/v1/airbox/rcpt-box-1/receipt")
    try:
        ts0 = int(time.time()) - 3600
        publish(mosquitto.port, {topic: airbox_payloads(device, range(1, 301), ts0)})
        wait_until(lambda: listener.highest() == 300, 30, what="a receipt for seq 300")
        assert count(database_url, "SELECT count(*) FROM readings WHERE device_id = %s", device) == 300
        assert len(listener.seqs) <= 10, f"not coalesced: {len(listener.seqs)} receipts for 300 messages"
        assert listener.seqs == sorted(listener.seqs), "a receipt went backwards"
        # a message the gateway refuses (dead-lettered) is never covered by a receipt
        bad = orjson.dumps({"v": 1, "id": device, "seq": 999, "ts": ts0, "m": {"pm25": "high"}})
        publish(mosquitto.port, {topic: [bad]})
        wait_until(lambda: count(database_url, "SELECT count(*) FROM rejected_messages") == 1, 20,
                   what="the dead letter")
        time.sleep(2.5)  # more than two receipt intervals
        assert listener.highest() == 300
    finally:
        listener.close()
    # a device that reconnects hears its latest receipt at once (retained)
    late = ReceiptListener(mosquitto.port, "citysense/v1/airbox/rcpt-box-1/receipt")
    try:
        wait_until(lambda: late.highest() == 300, 10, what="the retained receipt")
        assert late.retained[0] is True
    finally:
        late.close()


def test_receipts_can_be_turned_off(mosquitto: Any, database_url: str, start_gateway: Any) -> None:
    device, topic = "rcpt-box-2", "citysense/v1/airbox/rcpt-box-2/up"
    start_gateway(mosquitto.url, database_url, CITYSENSE_RECEIPTS="false", CITYSENSE_RECEIPT_INTERVAL_S="0.2")\
        .wait_subscribed()
    listener = ReceiptListener(mosquitto.port, "citysense/v1/airbox/rcpt-box-2/receipt")
    try:
        publish(mosquitto.port, {topic: airbox_payloads(device, range(1, 21), int(time.time()) - 600)})
        wait_until(lambda: count(database_url, "SELECT count(*) FROM readings WHERE device_id = %s", device) == 20,
                   20, what="20 readings")
        time.sleep(1.0)
        assert listener.seqs == []
    finally:
        listener.close()
