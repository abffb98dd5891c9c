"""Gateways are stateless: a reading's flags do not depend on the replica, restarts or retries.

Real gateway processes, real Mosquitto and PostgreSQL. One stream (several devices, stuck
runs, spikes, copies of messages, out-of-order timestamps) goes through one gateway, through
two gateways on a shared subscription, and through a gateway killed mid-stream; every run
must store the identical rows, and their stuck/spike bits must be what the rule gives each
series judged once in time order.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest

from contracts.flags import Flag
from devtools.ports import free_port
from gateway.anomaly_flags import STUCK_SPIKE_RULE, flag_run
from ingest.series_windows import SeriesWindow
from tests.conftest import TEMPLATE, wait_until
from tests.fault_tools import BackgroundPublisher, publish, readings, scrape

Row = tuple[float, str, str, float, float | None, int, int | None]
ANOMALY = int(Flag.STUCK | Flag.SPIKE)
_names = itertools.count(1)


def _stream(devices: int, per_device: int, seed: int = 11) -> tuple[dict[str, list[bytes]], int]:
    """topic -> payloads, and how many distinct readings they carry. Each device's values
    have stuck runs and spikes; about 3 % of its messages are sent twice and a fifth of its
    messages are sent out of time order (blocks of 8 shuffled)."""
    rng = random.Random(seed)
    base = int(time.time()) - 2 * 86400
    stream: dict[str, list[bytes]] = {}
    for d in range(devices):
        device = f"sl-{d:03d}"
        docs = []
        k = 0
        while k < per_device:
            if rng.random() < 0.04:  # a stuck sensor: one value 20 to 40 times
                stuck = float(rng.randint(20, 60))
                for _ in range(min(rng.randint(20, 40), per_device - k)):
                    docs.append({"v": 1, "id": device, "seq": k, "ts": base + k, "m": {"pm25": stuck, "t": 21.5}})
                    k += 1
                continue
            pm25 = 400.0 if rng.random() < 0.02 else round(rng.uniform(8, 20), 1)
            docs.append({"v": 1, "id": device, "seq": k, "ts": base + k,
                         "m": {"pm25": pm25, "t": round(20 + rng.uniform(-0.5, 0.5), 1)}})
            k += 1
        for start in range(0, len(docs), 8):
            if rng.random() < 0.2:
                block = docs[start : start + 8]
                rng.shuffle(block)
                docs[start : start + 8] = block
        payloads = [orjson.dumps(doc) for doc in docs]
        copies = [p for p in payloads if rng.random() < 0.03]
        for p in copies:
            payloads.insert(rng.randrange(len(payloads)), p)
        stream[f"citysense/v1/airbox/{device}/up"] = payloads
    return stream, devices * per_device * 2


def _rows(url: str) -> set[Row]:
    with psycopg.connect(url) as conn:
        return set(conn.execute(
            b"SELECT extract(epoch FROM time)::float8, device_id, metric, raw, value, flags, calibration_id"
            b" FROM readings"
        ).fetchall())


def _rule_bits(rows: set[Row]) -> dict[tuple[str, str, float], int]:
    """The stuck/spike bits of each stored row, judged once per series in time order."""
    out = {}
    for (device, metric), group in itertools.groupby(sorted(rows, key=lambda r: (r[1], r[2], r[0])),
                                                     key=lambda r: (r[1], r[2])):
        judged = [r for r in group if STUCK_SPIKE_RULE.feeds_window(metric, r[5])]
        for r, bits in zip(judged, flag_run(SeriesWindow(), metric, [r[3] for r in judged]), strict=True):
            out[(device, metric, r[0])] = bits
    return out


def _assert_flags_follow_the_rule(rows: set[Row]) -> None:
    expected = _rule_bits(rows)
    stored = {(r[1], r[2], r[0]): r[5] & ANOMALY for r in rows if (r[1], r[2], r[0]) in expected}
    wrong = {k for k in expected if stored[k] != expected[k]}
    assert not wrong, f"{len(wrong)} rows with other stuck/spike bits than the rule, e.g. {sorted(wrong)[:3]}"


@pytest.fixture
def fresh_database(pg_server: Any) -> Iterator[Any]:
    """A factory of further fresh databases (one run of the stream each)."""
    made: list[str] = []

    def make() -> str:
        name = f"sl_{next(_names)}_{int(time.time() * 1000) % 10**8}"
        made.append(name)
        return str(pg_server.create_database(name, template=TEMPLATE))

    yield make
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def _register(url: str, stream: dict[str, list[bytes]]) -> str:
    """Register the stream's devices, so no run depends on when a gateway first saw an id."""
    with psycopg.connect(url, autocommit=True) as conn:
        for topic in stream:
            conn.execute("INSERT INTO devices (device_id, kind, registered) VALUES (%s, 'airbox', true)",
                         (topic.split("/")[3],))
    return url


def _wait_connected(gw: Any) -> None:
    wait_until(lambda: "event=mqtt_connected" in gw.log(), 20, what="gateway MQTT session")
    time.sleep(0.5)  # SUBACK follows CONNACK


@pytest.mark.slow
def test_one_gateway_two_shared_gateways_and_a_restart_store_identical_rows_and_flags(
    mosquitto: Any, database_url: str, fresh_database: Any, start_gateway: Any
) -> None:
    started = time.monotonic()
    stream, expected = _stream(devices=20, per_device=985)
    messages = sum(len(p) for p in stream.values())
    assert 20_000 <= messages <= 20_500, messages

    _register(database_url, stream)
    one = start_gateway(mosquitto.url, database_url, CITYSENSE_MQTT_CLIENT_ID="sl-single")
    _wait_connected(one)
    publish(mosquitto.port, stream)
    wait_until(lambda: readings(database_url) >= expected, 90, interval=0.2, what="the single gateway's rows")
    one.terminate()
    single = _rows(database_url)
    assert len(single) == expected
    stuck = sum(1 for r in single if r[5] & Flag.STUCK)
    spikes = sum(1 for r in single if r[5] & Flag.SPIKE)
    assert stuck > 500 and spikes > 50, (stuck, spikes)  # the stream exercises both rules
    _assert_flags_follow_the_rule(single)

    shared_url = _register(fresh_database(), stream)
    ports = [free_port(), free_port()]
    pair = [
        start_gateway(mosquitto.url, shared_url, CITYSENSE_MQTT_CLIENT_ID=f"sl-shared-{i}",
                      CITYSENSE_MQTT_SHARED_GROUP="citysense", CITYSENSE_GATEWAY_METRICS_PORT=str(port),
                      CITYSENSE_BATCH_MAX_MESSAGES="500")
        for i, port in enumerate(ports)
    ]
    for gw in pair:
        _wait_connected(gw)
    publish(mosquitto.port, stream)
    wait_until(lambda: readings(shared_url) >= expected, 90, interval=0.2, what="the two gateways' rows")
    acked = [scrape(p, "citysense_gateway_messages_acked_total") for p in ports]
    assert min(acked) >= messages * 0.2, f"one gateway took almost nothing: {acked}"
    for gw in pair:
        gw.terminate()
    assert _rows(shared_url) == single

    restart_url = _register(fresh_database(), stream)
    first = start_gateway(mosquitto.url, restart_url, CITYSENSE_MQTT_CLIENT_ID="sl-restart")
    _wait_connected(first)
    publisher = BackgroundPublisher(mosquitto.port, stream, chunks=4).start()
    wait_until(lambda: readings(restart_url) >= expected // 4, 60, interval=0.05, what="a quarter of the stream")
    first.kill()
    assert readings(restart_url) < expected, "the gateway finished before it was killed: the test proves nothing"
    start_gateway(mosquitto.url, restart_url, CITYSENSE_MQTT_CLIENT_ID="sl-restart")
    publisher.join()
    wait_until(lambda: readings(restart_url) >= expected, 90, interval=0.2, what="the restarted gateway's rows")
    assert _rows(restart_url) == single
    print(f"{messages} messages, three runs, identical rows ({stuck} stuck, {spikes} spikes) "
          f"in {time.monotonic() - started:.0f} s; shared split {acked[0]:.0f} + {acked[1]:.0f}")


def test_a_refused_batch_written_again_message_by_message_feeds_no_window_twice(
    mosquitto: Any, database_url: str, fresh_database: Any, start_gateway: Any
) -> None:
    """A constraint the codecs cannot know makes the database refuse one message inside a
    batch: the gateway writes that batch again message by message (the isolation path).
    The stored flags equal those of a clean run of the same stream without the poison."""
    stream, expected = _stream(devices=4, per_device=400, seed=5)
    poison_topic = "citysense/v1/airbox/sl-poison/up"
    poison = orjson.dumps({"v": 1, "id": "sl-poison", "ts": int(time.time()) - 60, "m": {"pm25": 666}})
    clean_url = _register(fresh_database(), stream)
    _register(database_url, stream)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE readings ADD CONSTRAINT no_666 CHECK (raw <> 666)")
    runs: dict[str, set[Row]] = {}
    for url, extra in ((clean_url, {}), (database_url, {poison_topic: [poison]})):
        gw = start_gateway(mosquitto.url, url, CITYSENSE_MQTT_CLIENT_ID=f"sl-refused-{len(runs)}",
                           CITYSENSE_BATCH_MAX_DELAY_MS="2000")  # long batches: the poison shares one
        _wait_connected(gw)
        publish(mosquitto.port, {**extra, **stream})
        wait_until(lambda u=url: readings(u) >= expected, 60, interval=0.2, what="every row")  # type: ignore[misc]
        gw.terminate()
        runs[url] = _rows(url)
        if extra:
            assert "event=db_write_refused" in gw.log(), "no batch was refused: the test proves nothing"
    only_refused, only_clean = runs[database_url] - runs[clean_url], runs[clean_url] - runs[database_url]
    assert not only_refused and not only_clean, (sorted(only_refused)[:5], sorted(only_clean)[:5])
    _assert_flags_follow_the_rule(runs[clean_url])
