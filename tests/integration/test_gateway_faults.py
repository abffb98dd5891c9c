"""The gateway never loses or duplicates a reading: real processes killed, restarted and starved.

Each test publishes a stream whose every message has its own (device, ts), breaks one
part of the chain in the middle (gateway, broker, database), and then counts rows: the
count must equal the messages times their metrics, and the distinct (device_id, metric,
time) count must equal it too.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from citysense.ports import free_port
from tests.conftest import wait_until
from tests.integration.fault_tools import (
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
    and the gateway reconnects by itself to drain them and to receive what comes after."""
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
    mosquitto.restart()
    at_restart = readings(database_url)
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
    gw = start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID=client_id)
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
