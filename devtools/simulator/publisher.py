"""Publish the simulated fleet's payload-v1 messages to a broker at QoS 1, kept until receipts cover them.

The same discipline as the firmware (firmware/lib/device.py): each simulated device
keeps every reading it published until the gateway's receipt `{"seq": N}` on
`citysense/v1/{kind}/{id}/receipt` covers it; on a reconnect, and when no receipt
has advanced for `receipt_timeout_s` (doubling to 16x while none comes), what is
unconfirmed is resent oldest first as `batch` messages, and newer readings wait
until a receipt covers the resend (a receipt names only the highest seq stored).
Cost: one wildcard subscription for the fleet, one list per device (bounded by
`max_kept`, the oldest dropped and counted beyond it), O(1) per receipt.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from contracts.urls import parse_mqtt_url
from devtools.simulator.air_model import AirBox
from devtools.simulator.fleet import FleetModel, ParkingSpot
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


RECEIPT_TOPICS = "citysense/v1/+/+/receipt"
RESEND_BACKOFF_MAX = 16
BATCH_ITEMS = 50


@dataclass(slots=True)
class Outbox:
    """One simulated device's readings, kept until a receipt covers them."""

    up_topic: str
    device_id: str
    kept: list[dict[str, object]] = field(default_factory=list)  # batch items, oldest first
    sent: int = 0  # how many of `kept` (from the left) were published on this connection
    hold: int = -1  # after a rewind: readings with a higher seq wait until a receipt covers this one
    waiting_since: float = 0.0  # when the oldest unconfirmed wait began, or the last receipt advanced
    factor: int = 1
    dropped: int = 0

    def sendable(self) -> int:
        """How many of `kept` may be published now: all, or only up to `hold` while it is uncovered."""
        if self.hold < 0:
            return len(self.kept)
        n = self.sent
        while n < len(self.kept) and _seq(self.kept[n]) <= self.hold:
            n += 1
        return n

    def rewind(self) -> None:
        self.sent = 0
        self.hold = _seq(self.kept[-1]) if self.kept else -1
        self.waiting_since = 0.0

    def cover(self, seq: int, now: float) -> int:
        """Drop every kept reading with seq <= `seq`; returns how many."""
        n = 0
        while n < len(self.kept) and _seq(self.kept[n]) <= seq:
            n += 1
        if n:
            del self.kept[:n]
            self.sent = max(0, self.sent - n)
            self.factor = 1
            self.waiting_since = now if self.sent else 0.0
            if self.hold <= seq:
                self.hold = -1
        return n


def _seq(item: dict[str, object]) -> int:
    value = item["seq"]
    assert isinstance(value, int)
    return value


class FleetPublisher:
    """One MQTT connection publishing on behalf of every simulated device."""

    def __init__(
        self,
        broker_url: str,
        boxes: list[AirBox],
        spots: list[ParkingSpot],
        interval_s: float,
        receipt_timeout_s: float = 60.0,
        max_kept: int = 1440,
    ) -> None:
        self.endpoint = parse_mqtt_url(broker_url)
        self.boxes = boxes
        self.spots = spots
        self.interval_s = interval_s
        self.receipt_timeout_s = receipt_timeout_s
        self.max_kept = max_kept
        self.model = FleetModel(boxes, spots)
        self.published = 0
        self.batched = 0  # readings sent inside batch messages: resends and what waited behind them
        self.receipts = 0
        # `lock` guards the outboxes; paho's callbacks that run under paho's own message lock
        # (on_publish, on_disconnect) never take it, or they would deadlock with a publish().
        self.lock = threading.Lock()
        self.connected = False
        self.connects = 0
        self.ack_lock = threading.Lock()  # a leaf lock: nothing is acquired while it is held
        self.unacked: set[int] = set()  # mids waiting for the broker's PUBACK
        self.acked_early: set[int] = set()  # PUBACKs that came before publish() returned the mid
        self.outboxes: dict[str, Outbox] = {}
        for kind, ids in (("airbox", [b.device_id for b in boxes]), ("parking", [s.device_id for s in spots])):
            for dev in ids:
                self.outboxes[dev] = Outbox(f"citysense/v1/{kind}/{dev}/up", dev)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"citysense-sim-{int(time.time())}")
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_receipt
        self.client.on_publish = self._on_publish
        if self.endpoint.username:
            self.client.username_pw_set(self.endpoint.username, self.endpoint.password)

    # ---- paho callbacks (its network thread) ------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object) -> None:
        if rc.is_failure:
            log.warning("event=sim_connect_refused reason=%s", rc)
            return
        client.subscribe(RECEIPT_TOPICS, qos=1)
        with self.lock:
            self.connected = True
            self.connects += 1
            for box in self.outboxes.values():
                if self.connects > 1:  # what the old connection carried may be lost with the broker
                    box.rewind()
                self._flush(box)  # and what was made while there was no connection

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object
    ) -> None:
        self.connected = False  # an atomic store: see `lock`

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: ReasonCode, props: object) -> None:
        with self.ack_lock:
            if mid in self.unacked:
                self.unacked.discard(mid)
            else:
                self.acked_early.add(mid)

    def _on_receipt(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        box = self.outboxes.get(parts[3]) if len(parts) == 5 else None
        try:
            doc = orjson.loads(msg.payload)
            seq = doc["seq"] if isinstance(doc, dict) else None
        except (orjson.JSONDecodeError, KeyError):
            seq = None
        if box is None or not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            log.warning("event=sim_receipt_refused topic=%s payload=%r", msg.topic, bytes(msg.payload[:80]))
            return
        with self.lock:
            self.receipts += 1
            if box.cover(seq, time.monotonic()):
                self._flush(box)  # what waited behind a resend may go now

    # ---- publishing (called with self.lock held) ---------------------------

    def _send(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        with self.ack_lock:
            if info.mid in self.acked_early:
                self.acked_early.discard(info.mid)
            else:
                self.unacked.add(info.mid)
        self.published += 1

    def _flush(self, box: Outbox) -> None:
        """Publish the device's sendable, unsent readings: a live message for one, else batches."""
        if not self.connected:
            return
        upto = box.sendable()
        if upto <= box.sent:
            return
        if box.sent == 0 or box.waiting_since == 0.0:
            box.waiting_since = time.monotonic()
        items = box.kept[box.sent : upto]
        if len(items) == 1 and box.hold < 0:
            self._send(box.up_topic, orjson.dumps({"v": 1, "id": box.device_id, **items[0]}))
        else:
            for i in range(0, len(items), BATCH_ITEMS):
                chunk = items[i : i + BATCH_ITEMS]
                self._send(box.up_topic, orjson.dumps({"v": 1, "id": box.device_id, "batch": chunk}))
            self.batched += len(items)
        box.sent = upto

    def _keep(self, box: Outbox, item: dict[str, object]) -> None:
        box.kept.append(item)
        if len(box.kept) > self.max_kept:  # bounded, like the device's flash ring
            del box.kept[0]
            box.sent = max(0, box.sent - 1)
            box.dropped += 1
        self._flush(box)

    def _resend_overdue(self, now: float) -> None:
        for box in self.outboxes.values():
            if box.sent and now - box.waiting_since >= self.receipt_timeout_s * box.factor:
                box.rewind()
                box.factor = min(box.factor * 2, RESEND_BACKOFF_MAX)
                self._flush(box)

    @property
    def seq(self) -> int:
        """The seq of the latest readings (one counter for the fleet, one step per tick)."""
        return self.model.seq

    def kept(self) -> int:
        """Readings published or made and not yet covered by a receipt, over the whole fleet."""
        with self.lock:
            return sum(len(b.kept) for b in self.outboxes.values())

    def tick(self, now: float, dt_s: float) -> None:
        items = self.model.step(now, dt_s)
        with self.lock:
            self._resend_overdue(time.monotonic())
            for _kind, device_id, item in items:
                self._keep(self.outboxes[device_id], item)

    def run(self, stop: threading.Event, duration_s: float | None = None, receipt_wait_s: float = 5.0) -> int:
        """Publish every `interval_s` until `stop` or `duration_s`; then wait for PUBACKs and receipts."""
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
            while self.unacked and time.time() < deadline:
                time.sleep(0.05)
            deadline = time.time() + receipt_wait_s
            while self.kept() and time.time() < deadline:
                time.sleep(0.05)
            self.client.loop_stop()
            self.client.disconnect()
        return self.published
