"""Group commit: a batch goes to the database as soon as the committer waits for one, not at the batch deadline."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import count, wait_until
from tests.fault_tools import airbox_payloads, publish

LONG_DELAY_MS = 30_000  # a deadline no test below waits for


def test_a_lone_message_is_committed_without_waiting_for_the_batch_deadline(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    device, topic = "gc-box-1", "citysense/v1/airbox/gc-box-1/up"
    start_gateway(mosquitto.url, database_url, CITYSENSE_BATCH_MAX_DELAY_MS=str(LONG_DELAY_MS)).wait_subscribed()
    ts0 = int(time.time()) - 600
    published = time.monotonic()
    publish(mosquitto.port, {topic: airbox_payloads(device, range(1, 2), ts0)})
    sql = "SELECT count(*) FROM readings WHERE device_id = %s"
    # the committer is idle, so the batcher hands the message over at once; with the deadline
    # alone it would wait 30 s
    wait_until(lambda: count(database_url, sql, device) == 1, 10, what="the lone message stored")
    assert time.monotonic() - published < LONG_DELAY_MS / 1000 / 3
    # a stream keeps flowing the same way: every message stored long before one deadline
    publish(mosquitto.port, {topic: airbox_payloads(device, range(2, 502), ts0)})
    wait_until(lambda: count(database_url, sql, device) == 501, 10, what="501 messages stored")
