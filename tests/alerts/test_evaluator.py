"""The evaluator and delivery worker against real PostgreSQL, Mosquitto, an HTTP receiver and SMTP on loopback."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.delivery import DeliveryWorker, FlagPublisher
from alerts.evaluator import Evaluator
from alerts.rules import RuleBook, parse_rules
from alerts.store import AnyConn
from alerts.telemetry import REGISTRY
from contracts.settings import Settings
from devtools.local_broker import LocalMosquitto
from tests.alerts.receivers import SECRET, add_devices, add_readings, smtp_server, webhook_receiver
from tests.conftest import count, wait_until, write_status


async def connect(url: str) -> AnyConn:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AnyConn]:
    c = await connect(database_url)
    yield c
    await c.close()


def book(webhook: str | None = None, **sections: Any) -> RuleBook:
    data: dict[str, Any] = {"version": "test-1", **sections}
    if webhook:
        data["webhooks"] = [{"url": webhook}]
    return parse_rules(data)


def worker_settings(database_url: str, **extra: Any) -> Settings:
    return Settings(database_url=database_url, alerts_webhook_secret=SECRET, alerts_retry_base_s=0.05, **extra)


def db_now(url: str) -> datetime:
    with psycopg.connect(url) as c:
        row = c.execute("SELECT now()").fetchone()
        assert row is not None
        value: datetime = row[0]
        return value


OUTBOX_SILENT = (
    "SELECT count(*) FROM alert_outbox o JOIN alerts a ON a.id = o.alert_id"
    " WHERE a.rule = 'device_silent' AND o.transition = %s"
)


def seed_silent_fleet(url: str, n: int, silent_for_s: float) -> datetime:
    """n boxes sending every 10 s until `silent_for_s` ago."""
    add_devices(url, [(f"box-{i:02d}", "School A", None, None) for i in range(n)])
    last = db_now(url) - timedelta(seconds=silent_for_s)
    add_readings(
        url, [(last - timedelta(seconds=10 * j), f"box-{i:02d}", "pm25", 12.0, 0) for i in range(n) for j in range(8)]
    )
    return last


async def test_two_evaluators_at_once_write_each_transition_once(database_url: str) -> None:
    seed_silent_fleet(database_url, 20, silent_for_s=120)
    rules = book("http://127.0.0.1:9/hook")
    conns = [await connect(database_url) for _ in range(2)]
    try:
        for _ in range(4):
            results = await asyncio.gather(*(Evaluator(rules).run_cycle(c) for c in conns))
        assert count(database_url, "SELECT count(*) FROM alerts WHERE rule = 'device_silent'") == 20
        assert count(database_url, OUTBOX_SILENT, "opened") == 20
        assert count(database_url, "SELECT count(*) FROM alerts WHERE subject = 'devices_silent'") == 1  # the share
        add_readings(database_url, [(db_now(database_url), f"box-{i:02d}", "pm25", 12.0, 0) for i in range(10)])
        resolved = 0
        for _ in range(3):
            results = await asyncio.gather(*(Evaluator(rules).run_cycle(c) for c in conns))
            resolved += sum(r.transitions[("device_silent", "resolved")] for r in results)
        assert resolved == 10
        assert (
            count(database_url, "SELECT count(*) FROM alerts WHERE rule = 'device_silent' AND state = 'resolved'") == 10
        )
        assert count(database_url, "SELECT count(*) FROM alerts WHERE rule = 'device_silent' AND state = 'open'") == 10
        assert count(database_url, OUTBOX_SILENT, "resolved") == 10
    finally:
        for c in conns:
            await c.close()


def hourly_rows(
    device: str, start: datetime, hours: int, value: float, per_hour: int = 6
) -> list[tuple[datetime, str, str, float, int]]:
    return [
        (start + timedelta(hours=h, minutes=m * 60 // per_hour), device, "pm25", value, 0)
        for h in range(hours)
        for m in range(per_hour)
    ]


class FlagWatcher:
    """Records every message on the school's flag topic (retained included)."""

    def __init__(self, broker: LocalMosquitto, topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{random.randrange(10**9)}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append({"retain": msg.retain, **json.loads(msg.payload)})

    def colours(self) -> list[str]:
        with self.lock:
            out: list[str] = []
            for m in self.messages:
                if not out or out[-1] != m["colour"]:
                    out.append(m["colour"])
            return out

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_school_driven_through_the_bands_alerts_once_per_crossing_and_the_flag_follows(
    database_url: str, mosquitto: LocalMosquitto, conn: AnyConn
) -> None:
    school = "Da'an Elementary"
    add_devices(database_url, [("box-a", school, 25.02, 121.54), ("box-b", school, 25.021, 121.541)])
    start = db_now(database_url).replace(minute=0, second=0, microsecond=0) - timedelta(hours=11)
    for dev in ("box-a", "box-b"):
        add_readings(database_url, hourly_rows(dev, start, 12, 10.0))
    rules = book(None)
    topic = f"citysense/v1/school/{school}/flag"
    watcher = FlagWatcher(mosquitto, topic)
    publisher = FlagPublisher(mosquitto.url, "test-alerts-flags")
    worker = DeliveryWorker(worker_settings(database_url, mqtt_url=mosquitto.url), publisher)
    try:
        opened: list[str] = []
        # good, moderate, the 100/101 boundary and a dance on it, unhealthy, very unhealthy, back to good
        for value in (10.0, 20.0, 30.4, 30.5, 30.4, 30.6, 29.5, 30.5, 60.0, 150.0, 10.0):
            with psycopg.connect(database_url) as c:
                c.execute("UPDATE readings SET value = %s WHERE device_id IN ('box-a', 'box-b')", (value,))
            result = await Evaluator(rules).run_cycle(conn)
            opened += ["school_air"] * result.transitions[("school_air", "opened")]
            await worker.deliver_once(conn)
        with psycopg.connect(database_url) as c:
            bands = [
                r[0]
                for r in c.execute(
                    "SELECT evidence->>'band' FROM alerts WHERE rule = 'school_air' ORDER BY id"
                ).fetchall()
            ]
        assert bands == ["usg", "unhealthy", "very_unhealthy"]
        assert count(database_url, "SELECT count(*) FROM alerts WHERE rule = 'school_air' AND state <> 'resolved'") == 0
        wait_until(lambda: watcher.colours()[-1:] == ["green"] and len(watcher.colours()) == 6, 10, what="flags")
        assert watcher.colours() == ["green", "yellow", "orange", "red", "purple", "green"]
    finally:
        watcher.stop()
        publisher.close()
    late = FlagWatcher(mosquitto, topic)  # a display switched on later gets the retained flag at once
    try:
        wait_until(lambda: bool(late.messages), 10, what="retained flag")
        flag = late.messages[0]
        assert flag.pop("retain") is True
        assert set(flag) == {"school", "colour", "rgb", "aqi", "scale", "category", "at"}
        assert flag["colour"] == "green" and flag["rgb"] == "#00e400" and flag["scale"] == "tw_moenv_2025"
        assert flag["category"] == "good" and isinstance(flag["aqi"], int) and flag["at"].endswith("Z")
    finally:
        late.stop()


def seed_neighbourhood(url: str, special: dict[str, float]) -> None:
    """Nine boxes within about a kilometre, three hours of readings near 15 µg/m³, some boxes overridden."""
    rnd = random.Random(7)
    devices = [(f"nb-{i}", None, 25.03 + 0.003 * (i % 3), 121.55 + 0.003 * (i // 3)) for i in range(9)]
    add_devices(url, devices)
    start = db_now(url).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    rows = []
    for device, *_ in devices:
        base = special.get(device, 15.0)
        for t, d, m, _v, f in hourly_rows(device, start, 3, 0.0):
            rows.append((t, d, m, max(0.0, base + rnd.uniform(-2, 2) * (base > 1)), f))
    add_readings(url, rows)


async def test_injected_local_source_is_ranked_first_and_a_dying_fan_is_implausible(
    database_url: str, conn: AnyConn
) -> None:
    seed_neighbourhood(database_url, {"nb-4": 45.0, "nb-7": 27.0, "nb-2": 0.4})
    await Evaluator(book(None)).run_cycle(conn)
    with psycopg.connect(database_url) as c:
        hot = c.execute(
            "SELECT subject, (evidence->>'rank')::int, (evidence->>'excess_ugm3')::float FROM alerts"
            " WHERE rule = 'hotspot' ORDER BY 2"
        ).fetchall()
        implausible = c.execute("SELECT subject, evidence FROM alerts WHERE rule = 'implausible'").fetchall()
    assert [h[0] for h in hot] == ["nb-4", "nb-7"]
    assert 26 < hot[0][2] < 34
    assert [i[0] for i in implausible] == ["nb-2"]
    assert implausible[0][1]["reasons"]["neighbours"]["ratio"] < 0.1


def webhook_failures() -> float:
    return REGISTRY.get_sample_value("citysense_alerts_delivery_failures_total", {"channel": "webhook"}) or 0.0


async def test_webhook_is_signed_retried_with_backoff_and_dead_lettered(database_url: str, conn: AnyConn) -> None:
    seed_silent_fleet(database_url, 1, silent_for_s=120)
    with webhook_receiver(fail_first=2) as flaky, webhook_receiver(fail_first=-1) as dead:
        rules = parse_rules({"version": "t", "webhooks": [{"url": flaky.url}, {"url": dead.url}]})
        await Evaluator(rules).run_cycle(conn)
        worker = DeliveryWorker(worker_settings(database_url, alerts_delivery_attempts=4), None)
        failures_before = webhook_failures()
        for _ in range(40):
            await worker.deliver_once(conn)
            await asyncio.sleep(0.05)
        assert len(flaky.accepted()) == 1 and flaky.refused == 2
        delivery = flaky.accepted()[0]
        assert delivery.signature_ok() and not delivery.signature_ok("another secret")
        assert delivery.json["alert"]["rule"] == "device_silent" and delivery.json["transition"] == "opened"
        assert dead.refused == 4
        with psycopg.connect(database_url) as c:
            row = c.execute(
                "SELECT attempts, dead_at IS NOT NULL, last_error FROM alert_outbox WHERE target = %s", (dead.url,)
            ).fetchone()
        assert row is not None and row[0] == 4 and row[1] and "500" in row[2]
        assert webhook_failures() - failures_before == 6


async def test_email_goes_over_starttls_as_one_digest_per_recipient(
    database_url: str, conn: AnyConn, tmp_path: Path
) -> None:
    seed_silent_fleet(database_url, 3, silent_for_s=120)
    with smtp_server(tmp_path) as mailbox:
        rules = parse_rules(
            {
                "version": "t",
                "email": ["bureau@city.example"],
                "overrides": [{"school": "School A", "email": ["head@school-a.example"]}],
            }
        )
        settings = worker_settings(
            database_url, alerts_smtp_url=mailbox.url, alerts_smtp_ca_file=mailbox.ca_file, alerts_email_digest_s=60
        )
        await Evaluator(rules).run_cycle(conn)
        worker = DeliveryWorker(settings, None)
        await worker.deliver_once(conn)
        wait_until(lambda: len(mailbox.mails) == 2, 10, what="two digests")
        assert all(tls for tls, _ in mailbox.mails)
        digest = mailbox.to("head@school-a.example")[0]
        assert "3 opened" in digest["Subject"]
        assert str(digest.get_payload()).count("device_silent") == 3
        add_readings(database_url, [(db_now(database_url), "box-00", "pm25", 12.0, 0)])
        await Evaluator(rules).run_cycle(conn)  # box-00 resolves: queued, but within the digest period
        await worker.deliver_once(conn)
        await asyncio.sleep(0.3)
        assert len(mailbox.mails) == 2
        assert (
            count(database_url, "SELECT count(*) FROM alert_outbox WHERE channel = 'email' AND delivered_at IS NULL")
            == 2
        )


async def test_stuck_pinned_humidity_flag_rate_and_dead_letters_from_the_database(
    database_url: str, conn: AnyConn
) -> None:
    add_devices(database_url, [(f"q-{i}", None, None, None) for i in range(4)])
    now = db_now(database_url)
    rows = []
    for minute in range(80):
        t = now - timedelta(minutes=minute)
        rows.append((t, "q-0", "pm25", 12.0, 32))  # STUCK for 80 minutes
        rows.append((t, "q-1", "rh", 100.0, 0))  # humidity pinned
        rows.append((t, "q-2", "pm25", 900.0 if minute % 3 == 0 else 12.0, 64 if minute % 3 == 0 else 0))  # SPIKEs
        rows.append((t, "q-3", "pm25", 12.0, 32 if minute < 30 else 0))  # STUCK for only 30 minutes
    add_readings(database_url, rows)
    with psycopg.connect(database_url) as c:
        c.cursor().executemany(
            "INSERT INTO rejected_messages (topic, payload, reason, digest) VALUES ('t', 'x', 'bad', %s)",
            [(bytes([i]) * 32,) for i in range(40)],
        )
    await Evaluator(book(None)).run_cycle(conn)
    with psycopg.connect(database_url) as c:
        found = {(r[0], r[1]): r[2] for r in c.execute("SELECT rule, subject, evidence FROM alerts").fetchall()}
    assert ("device_stuck", "q-0:pm25") in found and ("device_stuck", "q-3:pm25") not in found
    assert set(found[("implausible", "q-1")]["reasons"]) == {"humidity_pinned"}
    assert set(found[("implausible", "q-2")]["reasons"]) == {"flag_rate"}
    assert found[("pipeline", "dead_letter_ratio")]["dead_letters"] == 40


async def test_a_parking_sensor_whose_detector_needs_relearning_raises_an_alert_until_it_has_relearnt(
    database_url: str, conn: AnyConn
) -> None:
    """The rule reads the detector health the sensor's status carries (migration 0015's columns);
    an override per device turns it off; an air box's status is never judged by it."""
    with psycopg.connect(database_url) as c:
        c.execute("INSERT INTO devices (device_id, kind, school, registered) VALUES ('bay-1', 'parking', NULL, true),"
                  " ('bay-2', 'parking', NULL, true), ('box-1', 'airbox', NULL, true)")
    write_status(database_url, "parking", "bay-1", {"online": True, "base_age_s": 0, "conf": 0.4, "relearn": True})
    write_status(database_url, "parking", "bay-2", {"online": True, "base_age_s": 50, "conf": 0.5, "relearn": True})
    write_status(database_url, "airbox", "box-1", {"online": True, "relearn": True})
    rules = book(None, overrides=[{"device": "bay-2", "parking_relearn": {"enabled": False}}])
    await Evaluator(rules).run_cycle(conn)

    def relearn_alerts() -> dict[str, tuple[str, dict[str, Any]]]:
        with psycopg.connect(database_url) as c:
            rows = c.execute("SELECT subject, state, evidence FROM alerts WHERE rule = 'parking_relearn'").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    found = relearn_alerts()
    assert set(found) == {"bay-1"} and found["bay-1"][0] == "open"
    assert found["bay-1"][1]["baseline_age_s"] == 0 and found["bay-1"][1]["confidence"] == 0.4
    write_status(database_url, "parking", "bay-1", {"online": True, "base_age_s": 0, "conf": 0.9, "relearn": False})
    await Evaluator(rules).run_cycle(conn)
    assert relearn_alerts()["bay-1"][0] == "resolved"
