"""The gateway never loses or duplicates a reading: real processes killed, restarted and starved.

Each test publishes a stream whose every message has its own (device, ts), breaks one
part of the chain in the middle (gateway, broker, database), and then counts rows: the
count must equal the messages times their metrics, and the distinct (device_id, metric,
time) count must equal it too.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from contracts.ids import namespace_conflict
from contracts.records import Decoded, DecodeError
from devtools.ports import free_port
from gateway.codecs import decode
from ingest.batch_writer import Rejected
from tests.conftest import wait_until
from tests.fault_tools import (
    METRICS_PER_MESSAGE,
    BackgroundPublisher,
    distinct_readings,
    message_count,
    publish,
    readings,
    rss_mb,
    scrape,
    v1_stream,
)
from tests.hostile_payloads import hostile_message

ACKED = "citysense_gateway_messages_acked_total"
DUPLICATES = "citysense_gateway_duplicate_rows_total"


def _assert_exactly_once(database_url: str, expected_rows: int, settle_s: float = 2.0) -> None:
    time.sleep(settle_s)  # a late duplicate would land now
    assert readings(database_url) == expected_rows
    assert distinct_readings(database_url) == expected_rows


def _wait_connected(gw: Any, times: int = 1, timeout: float = 20.0) -> None:
    wait_until(lambda: gw.log().count("event=mqtt_connected") >= times, timeout, what="gateway MQTT session")


@pytest.mark.slow
def test_gateway_survives_kill_9_mid_stream(mosquitto: Any, database_url: str, start_gateway: Any) -> None:
    client_id = "fault-gw-kill9"
    gw = start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id)
    _wait_connected(gw)
    stream = v1_stream(devices=50, per_device=1000, prefix="k9")
    expected = message_count(stream) * METRICS_PER_MESSAGE
    assert message_count(stream) == 50_000
    started = time.monotonic()
    publisher = BackgroundPublisher(mosquitto.port, stream, chunks=4).start()
    wait_until(lambda: readings(database_url) >= expected // 4, 120, interval=0.05, what="a quarter of the stream")
    gw.kill()
    at_kill = readings(database_url)
    print(f"kill -9 at {at_kill}/{expected} rows")
    assert at_kill < expected, "the gateway finished before it was killed: the test proves nothing"
    time.sleep(1.0)
    gw2 = start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id)
    publisher.join()
    wait_until(lambda: readings(database_url) >= expected, 180, interval=0.2, what=f"{expected} rows")
    _assert_exactly_once(database_url, expected)
    print(f"50,000 messages, kill -9 mid-stream: exact in {time.monotonic() - started:.1f} s")
    assert gw2.alive()
    assert "session_present=True" in gw2.log()


@pytest.mark.slow
def test_no_loss_across_mosquitto_restart(mosquitto: Any, database_url: str, start_gateway: Any) -> None:
    """Messages queued for the gateway's session survive the broker restart (persistence on),
    and the gateway reconnects by itself to drain them and to receive what comes after.

    The gateway is paused (SIGSTOP) from its first commit until the broker is back, so however
    fast this machine drains a backlog, the restart meets messages still queued and in flight."""
    client_id = "fault-gw-broker-restart"
    gw = start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id)
    _wait_connected(gw)
    assert gw.terminate() == 0  # the session stays on the broker; what follows is queued for it
    before = v1_stream(devices=20, per_device=1000, prefix="br")
    after = v1_stream(devices=20, per_device=250, prefix="br", start=1000)
    expected = (message_count(before) + message_count(after)) * METRICS_PER_MESSAGE
    publish(mosquitto.port, before)
    gw = start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id)
    wait_until(lambda: readings(database_url) > 0, 30, interval=0.02, what="the first committed batch")
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGSTOP)
    try:
        at_restart = readings(database_url)
        mosquitto.restart()
    finally:
        gw.proc.send_signal(signal.SIGCONT)
    print(f"broker restarted at {at_restart}/{expected} rows")
    assert at_restart < message_count(before) * METRICS_PER_MESSAGE, "drained before the restart: proves nothing"
    wait_until(lambda: gw.log().count("event=mqtt_connected") >= 2, 30, what="the gateway to reconnect")
    publish(mosquitto.port, after)
    wait_until(lambda: readings(database_url) >= expected, 120, interval=0.2, what=f"{expected} rows")
    _assert_exactly_once(database_url, expected)
    assert gw.alive()


@pytest.mark.slow
def test_no_loss_when_postgres_stops_for_30_s(
    mosquitto: Any, pg_server: Any, database_url: str, start_gateway: Any
) -> None:
    gw = start_gateway(mosquitto.url, database_url)
    _wait_connected(gw)
    assert gw.proc is not None
    stream = v1_stream(devices=40, per_device=1000, prefix="pg")
    expected = message_count(stream) * METRICS_PER_MESSAGE
    publisher = BackgroundPublisher(mosquitto.port, stream, chunks=20, pause_s=1.0).start()
    wait_until(lambda: readings(database_url) >= expected // 10, 60, interval=0.1, what="a tenth of the stream")
    peak_rss = rss_mb(gw.proc.pid)
    pg_server.stop("fast")
    try:
        outage_end = time.monotonic() + 30
        while time.monotonic() < outage_end:
            assert gw.alive(), "gateway died while the database was down"
            peak_rss = max(peak_rss, rss_mb(gw.proc.pid))
            time.sleep(0.5)
    finally:
        pg_server.start()
    at_restart = readings(database_url)
    print(f"postgres back at {at_restart}/{expected} rows")
    assert at_restart < expected, "the stream was stored before the outage: the test proves nothing"
    publisher.join()
    deadline = time.monotonic() + 120
    while readings(database_url) < expected and time.monotonic() < deadline:
        peak_rss = max(peak_rss, rss_mb(gw.proc.pid))
        time.sleep(0.5)
    print(f"40,000 messages across a 30 s database outage: peak gateway RSS {peak_rss:.0f} MB")
    _assert_exactly_once(database_url, expected)
    assert gw.alive()
    assert "event=db_write_failed" in gw.log()
    assert peak_rss < 300


def test_gateway_started_while_postgres_is_down_waits_then_stores_the_backlog(
    mosquitto: Any, pg_server: Any, database_url: str, start_gateway: Any
) -> None:
    client_id = "fault-gw-db-down-at-start"
    gw = start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id)
    _wait_connected(gw)
    assert gw.terminate() == 0
    stream = v1_stream(devices=10, per_device=500, prefix="dd")
    publish(mosquitto.port, stream)  # queued on the broker for the gateway's session
    pg_server.stop("fast")
    try:
        gw = start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id)
        wait_until(lambda: "event=database_unreachable" in gw.log(), 20, what="the gateway to notice")
        time.sleep(3)
        assert gw.alive(), "the gateway gave up while the database was down"
    finally:
        pg_server.start()
    expected = message_count(stream) * METRICS_PER_MESSAGE
    wait_until(lambda: readings(database_url) >= expected, 60, interval=0.2, what=f"{expected} rows")
    _assert_exactly_once(database_url, expected)
    assert gw.alive()


@pytest.mark.slow
def test_two_gateways_share_load_exactly_once(mosquitto: Any, database_url: str, start_gateway: Any) -> None:
    ports = [free_port(), free_port()]
    gateways = [
        start_gateway(
            mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=f"fault-gw-shared-{i}",
            CITYSENSE_MQTT_SHARED_GROUP="citysense", CITYSENSE_GATEWAY_METRICS_PORT=str(port),
        )
        for i, port in enumerate(ports)
    ]
    for gw in gateways:
        _wait_connected(gw)
    time.sleep(0.5)  # SUBACK follows CONNACK
    stream = v1_stream(devices=40, per_device=500, prefix="sh")
    messages = message_count(stream)
    publish(mosquitto.port, stream)
    wait_until(
        lambda: readings(database_url) >= messages * METRICS_PER_MESSAGE, 120, interval=0.2, what="every row"
    )
    _assert_exactly_once(database_url, messages * METRICS_PER_MESSAGE)
    wait_until(lambda: sum(scrape(p, ACKED) for p in ports) >= messages, 10, what="acks of every message")
    acked = [scrape(p, ACKED) for p in ports]
    print(f"{messages} messages split between two gateways: {acked[0]:.0f} + {acked[1]:.0f}")
    assert sum(acked) == messages
    assert min(acked) >= messages * 0.2, f"one gateway took almost nothing: {acked}"
    assert all(scrape(p, DUPLICATES) == 0 for p in ports)


def test_sigterm_flushes_and_exits_within_10_s(mosquitto: Any, database_url: str, start_gateway: Any) -> None:
    """What the gateway received is committed and acknowledged before it exits: a successor on
    the same session finds no redelivered message already stored (duplicate_rows stays 0)."""
    client_id = "fault-gw-sigterm"
    gw = start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id)
    _wait_connected(gw)
    assert gw.terminate() == 0
    stream = v1_stream(devices=20, per_device=2000, prefix="st")
    expected = message_count(stream) * METRICS_PER_MESSAGE
    publish(mosquitto.port, stream)  # a backlog on the broker: the gateway is busy when SIGTERM comes
    # small batches and queue, so the gateway's memory (queue + 4 batches in the pipeline) holds
    # a fraction of the backlog and SIGTERM finds most of it still on the broker
    gw = start_gateway(
        mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id,
        CITYSENSE_BATCH_MAX_MESSAGES="1000", CITYSENSE_QUEUE_MAX_MESSAGES="2000",
    )
    wait_until(lambda: readings(database_url) > 0, 30, interval=0.02, what="the first committed batch")
    started = time.monotonic()
    code = gw.terminate(timeout=15)
    took = time.monotonic() - started
    at_exit = readings(database_url)
    print(f"SIGTERM mid-stream at {at_exit}/{expected} rows: exit {code} after {took:.1f} s")
    assert code == 0
    assert took < 10
    assert at_exit < expected, "the backlog was drained before SIGTERM: the test proves nothing"
    assert "event=gateway_stopped" in gw.log()
    port = free_port()
    successor = start_gateway(
        mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id, CITYSENSE_GATEWAY_METRICS_PORT=str(port)
    )
    wait_until(lambda: readings(database_url) >= expected, 120, interval=0.2, what=f"{expected} rows")
    _assert_exactly_once(database_url, expected)
    duplicates = scrape(port, DUPLICATES)
    assert duplicates == 0, f"the first gateway committed {duplicates:.0f} rows it did not acknowledge"
    assert successor.alive()


def _draw_hostile_messages(lists: int, size: int) -> list[tuple[str, bytes]]:
    """`lists` x `size` messages drawn by hypothesis (one list per example keeps each draw small)."""
    drawn: list[tuple[str, bytes]] = []

    @settings(max_examples=lists, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(hostile_message(subscribed_only=True), min_size=size, max_size=size))
    def collect(messages: list[tuple[str, bytes]]) -> None:
        drawn.extend(messages)

    collect()
    return drawn


def test_hostile_payloads_never_crash_the_gateway(mosquitto: Any, database_url: str, start_gateway: Any) -> None:
    """300 hostile messages through a real broker: each is stored, or dead-lettered once, and
    the gateway stays up and acknowledges them all."""
    messages = _draw_hostile_messages(6, 50)
    port = free_port()
    gw = start_gateway(mosquitto.url, database_url, CITYSENSE_GATEWAY_METRICS_PORT=str(port))
    _wait_connected(gw)
    time.sleep(0.5)
    messages = [(t, p) for t, p in messages if p]  # MQTT delivers an empty payload as a retained-clear only
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hostile-publisher")
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    infos = [publisher.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(30)
    publisher.loop_stop()
    publisher.disconnect()
    wait_until(lambda: scrape(port, ACKED) >= len(messages), 60, what=f"acks of {len(messages)} messages")
    assert gw.alive()
    assert scrape(port, ACKED) == len(messages)

    received_at = time.time()
    refused: set[bytes] = set()
    stored: list[Decoded] = []
    kinds: dict[str, str] = {}  # a device's namespace is the kind of its first stored message (in order)
    for topic, payload in messages:
        try:
            d = decode(topic, payload, received_at)
        except DecodeError:
            refused.add(Rejected(0.0, topic, payload, "").digest())
            continue
        if namespace_conflict(d.device_id, d.kind, kinds.setdefault(d.device_id, d.kind)):
            refused.add(Rejected(0.0, topic, payload, "").digest())
        else:
            stored.append(d)
    with psycopg.connect(database_url) as conn:
        letters = {bytes(r[0]): r[1] for r in conn.execute("SELECT digest, reason FROM rejected_messages")}
        for d in stored:
            for _ts, device_id, metric, *_ in d.readings:
                assert conn.execute(
                    "SELECT 1 FROM readings WHERE device_id = %s AND metric = %s", (device_id, metric)
                ).fetchone(), f"reading {device_id}/{metric} lost"
            for row in d.parking:
                assert conn.execute("SELECT 1 FROM parking_events WHERE device_id = %s", (row[1],)).fetchone()
            if d.status is not None:
                assert conn.execute("SELECT 1 FROM device_status WHERE device_id = %s", (d.device_id,)).fetchone()
    print(f"{len(messages)} hostile messages: {len(stored)} stored, {len(refused)} distinct dead letters")
    assert set(letters) == refused, {r for r in letters.values() if "database refused" in r}
    assert "Traceback" not in gw.log()


def test_messages_the_database_refuses_are_dead_lettered_and_the_stream_goes_on(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    """Constraints the codecs cannot know (added to this test's database) make PostgreSQL, or
    asyncpg's own encoder, refuse three messages inside full batches: each poison message is
    dead-lettered with the database's reason, every other message of its batch is stored."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE readings ADD CONSTRAINT no_666 CHECK (raw <> 666)")
        conn.execute("ALTER TABLE parking_events ALTER COLUMN batt_mv TYPE smallint")  # 40000 overflows int2
        conn.execute("ALTER TABLE readings ALTER COLUMN raw TYPE real")  # 1e300 overflows float4
    port = free_port()
    gw = start_gateway(mosquitto.url, database_url, CITYSENSE_GATEWAY_METRICS_PORT=str(port))
    _wait_connected(gw)
    stream = v1_stream(devices=10, per_device=100, prefix="rf")
    now = int(time.time())
    poison = {
        "citysense/v1/airbox/rf-poison/up": [orjson.dumps({"v": 1, "id": "rf-poison", "ts": now, "m": {"pm25": 666}})],
        "citysense/v1/parking/rf-bay/up": [
            orjson.dumps({"v": 1, "id": "rf-bay", "ts": now, "ev": "change", "m": {"occupied": 1, "batt_mv": 40000}})
        ],
        "citysense/v1/airbox/rf-huge/up": [orjson.dumps({"v": 1, "id": "rf-huge", "ts": now, "m": {"pm25": 1e300}})],
    }
    publish(mosquitto.port, {**poison, **stream})
    expected = message_count(stream) * METRICS_PER_MESSAGE
    wait_until(lambda: scrape(port, ACKED) >= message_count(stream) + 3, 60, what="every message acknowledged")
    _assert_exactly_once(database_url, expected, settle_s=0.5)
    with psycopg.connect(database_url) as conn:
        reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM rejected_messages"))
    assert len(reasons) == 3 and all(r.startswith("database refused") for r in reasons), reasons
    assert gw.alive()
