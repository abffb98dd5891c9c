"""Plays the gateway's side of end-to-end receipts for device tests, against a real broker.

Like the real gateway it consumes `citysense/v1/+/+/up` on a persistent session,
acknowledges a message (manual PUBACK) only after it has "committed" it (into
`stored`, every `commit_s`), and then publishes a coalesced, retained QoS 1
receipt `{"seq": <highest seq stored>}` to each device of the commit, at most
one per device every `receipt_every_s`. What a lost connection leaves
uncommitted is dropped, as a gateway's open batch is when its broker dies.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

UP_TOPIC = "citysense/v1/+/+/up"


@dataclass
class _Pending:
    """A message received on connection `generation`, not yet committed."""

    generation: int
    mid: int
    topic: str
    payload: bytes


@dataclass
class StoredDevice:
    seqs: set[int] = field(default_factory=set)
    received: int = 0  # items, duplicates included
    receipt_due: bool = False
    last_receipt: float = 0.0


class ReceiptGateway:
    def __init__(self, port: int, commit_s: float = 0.3, receipt_every_s: float = 1.0) -> None:
        self.commit_s = commit_s
        self.receipt_every_s = receipt_every_s
        self.lock = threading.Lock()
        self.pending: list[_Pending] = []
        self.devices: dict[tuple[str, str], StoredDevice] = {}
        self.generation = 0
        self.receipts = 0
        self.dropped = 0  # items left uncommitted when a connection was lost
        self.stop_event = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="receipt-gateway", clean_session=False, manual_ack=True
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self.worker = threading.Thread(target=self._commit_loop, name="receipt-gateway", daemon=True)
        self.worker.start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object) -> None:
        client.subscribe(UP_TOPIC, qos=1)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object
    ) -> None:
        with self.lock:
            self.generation += 1  # what the lost connection delivered can no longer be acknowledged

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.pending.append(_Pending(self.generation, msg.mid, msg.topic, bytes(msg.payload)))

    def _commit_loop(self) -> None:
        while not self.stop_event.wait(self.commit_s):
            self.commit()
            self.send_receipts()

    def commit(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
            generation = self.generation
        for msg in batch:
            if msg.generation != generation:
                # delivered on a dead connection: the broker redelivers it, or the device resends
                self.dropped += len(orjson.loads(msg.payload).get("batch", [None]))
                continue
            _, _, kind, device, _ = msg.topic.split("/")
            doc = orjson.loads(msg.payload)
            items = doc.get("batch", [doc])
            with self.lock:
                dev = self.devices.setdefault((kind, device), StoredDevice())
                dev.seqs.update(int(i["seq"]) for i in items)
                dev.received += len(items)
                dev.receipt_due = True
            self.client.ack(msg.mid, 1)

    def send_receipts(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = [
                (k, d) for k, d in self.devices.items()
                if d.receipt_due and now - d.last_receipt >= self.receipt_every_s
            ]
            for _, dev in due:
                dev.receipt_due = False
                dev.last_receipt = now
            out = [(k, max(d.seqs)) for k, d in due]
        for (kind, device), seq in out:
            self.client.publish(f"citysense/v1/{kind}/{device}/receipt", orjson.dumps({"seq": seq}), qos=1, retain=True)
            self.receipts += 1

    def uncommitted(self) -> int:
        """Messages received and not yet committed (their PUBACK is still owed)."""
        with self.lock:
            return len(self.pending)

    def stored(self, kind: str, device: str) -> set[int]:
        with self.lock:
            dev = self.devices.get((kind, device))
            return set(dev.seqs) if dev else set()

    def received(self, kind: str, device: str) -> int:
        with self.lock:
            dev = self.devices.get((kind, device))
            return dev.received if dev else 0

    def close(self) -> None:
        self.stop_event.set()
        self.worker.join(5)
        self.client.loop_stop()
        self.client.disconnect()
