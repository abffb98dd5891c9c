"""What strangers can make the city store is bounded: new ids per minute, dead-letter sizes."""

from __future__ import annotations

import time
from typing import Any

import orjson
import psycopg

from contracts.limits import DEAD_LETTER_PAYLOAD_BYTES
from tests.conftest import count, wait_until
from tests.fault_tools import publish


def test_open_registration_admits_a_bounded_number_of_new_ids_a_minute(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    start_gateway(mosquitto.url, database_url, CITYSENSE_NEW_DEVICES_PER_MINUTE="20").wait_subscribed()
    ts = int(time.time()) - 60
    stream = {
        f"citysense/v1/airbox/made-up-{i:03d}/up": [
            orjson.dumps({"v": 1, "id": f"made-up-{i:03d}", "seq": 1, "ts": ts, "m": {"pm25": 9.0}})
        ]
        for i in range(100)
    }
    started = time.monotonic()
    publish(mosquitto.port, stream)
    wait_until(lambda: count(database_url, "SELECT count(*) FROM devices") + count(
        database_url, "SELECT count(*) FROM rejected_messages") >= 100, 30, what="every message stored or refused")
    elapsed_min = (time.monotonic() - started) / 60
    devices = count(database_url, "SELECT count(*) FROM devices")
    assert 20 <= devices <= 20 + int(20 * elapsed_min) + 1, devices
    with psycopg.connect(database_url) as conn:
        reasons = {r[0].split(";")[0] for r in conn.execute("SELECT reason FROM rejected_messages")}
    assert reasons == {"new devices: 20 a minute registered already"}
    assert count(database_url, "SELECT count(*) FROM readings") == devices  # one reading each, none lost silently


def test_a_dead_letter_keeps_the_first_4_kb_its_size_and_a_digest_of_all_of_it(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    start_gateway(mosquitto.url, database_url).wait_subscribed()
    big = b"{" + b"x" * 199_999  # 200 kB of broken JSON: under the decode limit, refused by the codec
    publish(mosquitto.port, {"citysense/v1/airbox/big-box-1/up": [big]})
    wait_until(lambda: count(database_url, "SELECT count(*) FROM rejected_messages") == 1, 20, what="the dead letter")
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT length(payload), payload_bytes, length(digest) FROM rejected_messages").fetchone()
    assert row == (DEAD_LETTER_PAYLOAD_BYTES, 200_000, 32)
