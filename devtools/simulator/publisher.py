"""Publish the simulated fleet's payload-v1 messages to a broker at QoS 1."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from contracts.urls import parse_mqtt_url
from devtools.simulator.air_model import AirBox, CityState
from devtools.simulator.fleet import ParkingSpot
from ingest.device_store import DeviceFields, register_devices

log = logging.getLogger(__name__)


def register_fleet(database_url: str, boxes: list[AirBox], spots: list[ParkingSpot]) -> None:
    """Give the simulated devices names, schools and places, as a school would at install."""
    register_devices(
        database_url,
        [(b.device_id, DeviceFields(kind="airbox", name=b.name, school=b.school, lat=b.lat, lon=b.lon,
                                    sensor_type="pms5003", owner="demo")) for b in boxes]
        + [(s.device_id, DeviceFields(kind="parking", name=f"Bay {s.device_id[-4:]}", site=s.zone, lat=s.lat,
                                      lon=s.lon, owner="demo")) for s in spots],
        rotate_token=True,  # a demo restarted on the same database registers its fleet again
    )
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO parking_spots (spot_id, device_id, zone, lat, lon) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (spot_id) DO NOTHING",
            [(f"spot-{s.device_id[-4:]}", s.device_id, s.zone, s.lat, s.lon) for s in spots],
        )


class FleetPublisher:
    """One MQTT connection publishing on behalf of every simulated device."""

    def __init__(self, broker_url: str, boxes: list[AirBox], spots: list[ParkingSpot], interval_s: float) -> None:
        self.endpoint = parse_mqtt_url(broker_url)
        self.boxes = boxes
        self.spots = spots
        self.interval_s = interval_s
        self.city = CityState()
        self.seq = 0
        self.published = 0
        self.unconfirmed: list[mqtt.MQTTMessageInfo] = []  # QoS 1 publishes the broker has not acknowledged
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"citysense-sim-{int(time.time())}")
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        if self.endpoint.username:
            self.client.username_pw_set(self.endpoint.username, self.endpoint.password)

    def _publish(self, topic: str, doc: dict[str, object]) -> None:
        self.unconfirmed.append(self.client.publish(topic, orjson.dumps(doc), qos=1))
        self.published += 1
        if len(self.unconfirmed) > 10_000:
            self.unconfirmed = [info for info in self.unconfirmed if not info.is_published()]

    def tick(self, now: float, dt_s: float) -> None:
        self.city.advance(dt_s)
        self.seq += 1
        ts = int(now)
        for box in self.boxes:
            doc = {"v": 1, "id": box.device_id, "seq": self.seq, "ts": ts, "m": box.sample(now, self.city)}
            self._publish(f"citysense/v1/airbox/{box.device_id}/up", doc)
        hour = ((now / 3600.0) + 8.0) % 24.0
        demand = 0.4 + 1.2 * (1.0 if 9 <= hour <= 21 else 0.2)
        for spot in self.spots:
            changed = spot.step(dt_s, demand)
            if changed or self.seq == 1 or self.seq % 10 == 0:
                m = {"occupied": int(spot.occupied), "mag": round(48.0 + (40.0 if spot.occupied else 0.0)
                     + spot.rng.gauss(0, 1.5), 1), "batt_mv": 3000 - self.seq % 200, "t": 24.0}
                ev = "change" if changed else ("boot" if self.seq == 1 else "heartbeat")
                self._publish(
                    f"citysense/v1/parking/{spot.device_id}/up",
                    {"v": 1, "id": spot.device_id, "seq": self.seq, "ts": ts, "m": m, "ev": ev},
                )

    def run(self, stop: threading.Event, duration_s: float | None = None) -> int:
        self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        self.client.loop_start()
        started = time.time()
        last = started - self.interval_s
        try:
            while not stop.is_set():
                now = time.time()
                if duration_s is not None and now - started >= duration_s:
                    break
                self.tick(now, now - last)
                last = now
                stop.wait(max(0.0, self.interval_s - (time.time() - now)))
        finally:
            deadline = time.time() + 10
            for info in self.unconfirmed:  # paho's public wait, bounded by one deadline for all
                # (one publish while disconnected reports an error and is not waited for)
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(max(0.0, deadline - time.time()))
            self.client.loop_stop()
            self.client.disconnect()
        return self.published
