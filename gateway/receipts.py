"""Commit receipts to devices: after a batch commits, each device hears the highest seq stored.

A broker acknowledges a device's PUBLISH before it has saved it (Mosquitto writes its
persistence file every autosave interval), so a device that deleted a reading on PUBACK
loses it when the broker crashes. Devices therefore keep every reading until a receipt
covers it and resend the rest; this module sends those receipts, on the device's own
`citysense/v1/{kind}/{device}/receipt` topic, QoS 1 and retained (a device that reconnects
hears its latest receipt at once), payload `{"seq": N}`.

Coalesced: a device gets at most one receipt per `interval_s`, whatever the number of its
messages committed meanwhile, and never one lower than a receipt this gateway sent it
before. Only messages in committed batches are noted, so a receipt never covers a reading
that is not stored. Rounds run one after another: while the broker is away a round waits
for it (the session resends on reconnect) and what is committed meanwhile waits, merged,
for the next round; memory is one entry per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from contracts.topics import v1_topic
from gateway import telemetry
from gateway.mqtt_session import MqttRefused, MqttSession

log = logging.getLogger(__name__)

DeviceKey = tuple[str, str]  # (kind, device_id)
MAX_DEVICES_REMEMBERED = 1_000_000  # `sent` is cleared past this (a lower receipt then is harmless)


class Receipts:
    def __init__(self, session: MqttSession, interval_s: float = 2.0) -> None:
        self.session = session
        self.interval_s = interval_s
        self.pending: dict[DeviceKey, int] = {}
        self.sent: dict[DeviceKey, int] = {}

    def note(self, stored: dict[DeviceKey, int]) -> None:
        """Remember the highest seq of each device in a batch that has just committed."""
        pending, sent = self.pending, self.sent
        for key, seq in stored.items():
            if seq > pending.get(key, -1) and seq > sent.get(key, -1):
                pending[key] = seq

    async def flush(self) -> int:
        """Publish one round of receipts (waiting for the broker's PUBACKs); returns how many."""
        if not self.pending:
            return 0
        batch, self.pending = self.pending, {}
        keys = list(batch)
        results = await asyncio.gather(
            *(self.session.publish(v1_topic(kind, device, "receipt"), b'{"seq":%d}' % batch[(kind, device)],
                                   qos=1, retain=True) for kind, device in keys),
            return_exceptions=True,
        )
        if len(self.sent) > MAX_DEVICES_REMEMBERED:
            self.sent.clear()
        done = 0
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, MqttRefused | ConnectionError):
                    raise result
                log.warning("event=receipt_not_sent device=%s error=%r", key[1], str(result))
                self.note({key: batch[key]})  # again next round
                continue
            self.sent[key] = max(self.sent.get(key, -1), batch[key])
            done += 1
        telemetry.RECEIPTS_SENT.inc(done)
        return done

    async def run(self, stop: asyncio.Event) -> None:
        """Send a round every `interval_s` until `stop`, then one last round (bounded by the caller)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            try:
                await self.flush()
            except ConnectionError:
                return  # the session closed: nothing more can be sent
