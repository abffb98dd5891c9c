"""Messages in, committed rows out, acknowledgements last.

Two tasks share the event loop: the batcher takes messages off the MQTT queue and turns
them into a `Batch` (decode, validate, registry, anomaly flags, calibration), and the
committer writes batches in order and only then acknowledges their messages. While one
batch waits on PostgreSQL the next is being decoded. A database outage makes the
committer retry with backoff; the hand-over queue between the two tasks is bounded, so
the batcher stops, the MQTT queue fills, the session stops reading, and the broker keeps
the rest: memory stays bounded and nothing is acknowledged that is not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from contracts.flags import Flag
from contracts.ids import namespace_conflict
from contracts.records import Decoded, DecodeError, ReadingRow
from gateway import telemetry
from gateway.calibration_step import Calibrator
from gateway.codecs import decode
from gateway.device_registry import DeviceRegistry
from gateway.mqtt_session import Inbound, MqttSession
from gateway.receipts import Receipts
from ingest.batch_writer import Batch, BatchWriter, OncePayload, Rejected, StatusRow, UplinkRow, WriteResult
from ingest.device_store import NewDevice

log = logging.getLogger(__name__)

CONNECTION_ERRORS = (
    OSError, ConnectionError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError,
)
# The data, not the connection: asyncpg's client-side DataError (a value that does not fit
# its column) is an InterfaceError too, but also a ValueError, and must not be retried forever.
REFUSAL_ERRORS = (asyncpg.PostgresError, ValueError, OverflowError)


def is_outage(exc: BaseException) -> bool:
    """True when retrying the same batch later can succeed (the database was unreachable)."""
    return isinstance(exc, CONNECTION_ERRORS) and not isinstance(exc, ValueError | OverflowError)


class BatchRefused(Exception):
    """The database refused a batch for its content; retrying it unchanged cannot help."""


UNTRUSTED_CLOCK = int(Flag.NO_CLOCK | Flag.CLOCK_SKEW)
# Batcher and committer share one event loop. Preparing a 5,000-message batch is ~150 ms of
# CPU; done in one go it delays each of the committer's database round trips (BEGIN, COPY,
# COMMIT...) by as much, which made commits take 0.4 s under load (citysense bench ingest).
# Yielding every this many messages keeps every delay to a few ms.
YIELD_EVERY = 64
CHUNK_ROWS = 1000


# Python's cyclic garbage collector by default runs a young collection every 700 new container
# objects: ~70 per 5,000-message batch (each message brings its JSON dicts, a Decoded and five row
# tuples), and every tenth of them walks the rows of the batches in flight again. That was 19 % of
# the write path's CPU (devtools/bench/write_path_cost.py). A batch's objects form no reference
# cycles (rows are tuples of scalars, freed when the batch is acknowledged), so collecting less
# often frees the same memory, only later.
# The young count is net: objects allocated less those freed since the last collection. A prepared
# batch holds ~5.2 of them per message (a Decoded, its lists, its row tuples), and up to four
# batches are alive at once (one prepared, two handed over, one committing): at 5,000 messages
# ~105,000, ~140,000 with their Inbound messages. A threshold of 50,000 collected about once per
# batch and walked each batch's objects while they were in flight, for nothing (2.1 µs per message,
# 6 % of the write path, measured with four batches alive); above what the batches in flight hold,
# a collection runs only when objects outlive them (cyclic garbage, growth), at most this many
# objects of cyclic garbage later than before.
GC_YOUNG_THRESHOLD = 200_000
GC_OLDER_THRESHOLDS = (20, 20)


def collect_garbage_per_batch() -> None:
    """Tune the cyclic collector for batch processing (see GC_YOUNG_THRESHOLD); call once, after
    start-up, so what start-up loaded is frozen out of every later collection."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *GC_OLDER_THRESHOLDS)


@dataclass(slots=True)
class Prepared:
    batch: Batch
    messages: list[Inbound]
    accepted: Counter[str]
    rejected: Counter[str]
    new_devices: list[tuple[str, str]]  # (device id, kind) registered by this batch
    stored_seqs: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, device) -> highest seq


class Pipeline:
    def __init__(
        self,
        source: MqttSession,
        writer: BatchWriter,
        registry: DeviceRegistry,
        calibrator: Calibrator,
        *,
        batch_max_messages: int = 5000,
        batch_max_delay_s: float = 0.1,
        receipts: Receipts | None = None,
    ) -> None:
        self.source = source
        self.receipts = receipts
        self.writer = writer
        self.registry = registry
        self.calibrator = calibrator
        self.batch_max_messages = batch_max_messages
        self.batch_max_delay_s = batch_max_delay_s
        self._handover: asyncio.Queue[Prepared | None] = asyncio.Queue(maxsize=2)
        self._committer_idle = False  # the committer waits on an empty hand-over queue (see _collect)
        self.committed_messages = 0

    # -- batcher -------------------------------------------------------------------------
    async def _collect(self, stop: asyncio.Event) -> list[Inbound]:
        """Wait for a first message, then up to the deadline or the size bound, or until the
        committer has nothing to do (group commit).

        A committer waiting for work gets the messages at once: a batch then holds what arrived
        during the previous commit, so below full load a message waits about one commit, not
        the whole `batch_max_delay_s` (at half load that wait was most of the p99). Under full
        load the committer always has a batch in hand, so batches still grow to the deadline or
        the size bound and cost per message is unchanged."""
        while not self.source.queue:
            if stop.is_set():
                return []
            await self.source.wait_for_data(0.2)
        deadline = time.monotonic() + self.batch_max_delay_s
        messages = self.source.take(self.batch_max_messages)
        while len(messages) < self.batch_max_messages and not stop.is_set():
            if self._committer_idle:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self.source.wait_for_data(remaining)
            messages.extend(self.source.take(self.batch_max_messages - len(messages)))
        return messages

    async def prepare(self, messages: list[Inbound]) -> Prepared:
        batch = Batch()
        accepted: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        decoded: list[tuple[Inbound, Decoded]] = []
        for i, msg in enumerate(messages, 1):
            if not i % YIELD_EVERY:
                await asyncio.sleep(0)  # let the committer's database replies through (see YIELD_EVERY)
            try:
                d = decode(msg.topic, msg.payload, msg.received_at)
            except DecodeError as exc:
                self._reject(batch, rejected, msg, str(exc))
                continue
            except Exception as exc:
                log.exception("event=codec_crash topic=%s", msg.topic)
                self._reject(batch, rejected, msg, f"internal decoder error: {type(exc).__name__}: {exc}")
                continue
            if d.codec == "lass" and d.readings and d.readings[0][5] & UNTRUSTED_CLOCK:
                # LASS publishes each reading on two topics, perhaps to two replicas: the writer
                # stores the readings of the first copy it meets (payload digests in the database)
                batch.once.append(OncePayload.of(msg.payload, msg.received_at, d.device_id, d.readings[0][0]))
            decoded.append((msg, d))
        await self._map_dev_euis(batch, decoded, rejected)
        await self._apply_registry(batch, decoded, rejected)
        flagged: list[ReadingRow] = []
        seqs: dict[tuple[str, str], int] = {}
        for msg, d in decoded:
            if d.seq is not None and seqs.get((d.kind, d.device_id), -1) < d.seq:
                seqs[(d.kind, d.device_id)] = d.seq
            if d.readings:
                flagged.extend(d.readings)
            if d.parking:
                batch.parking.extend(d.parking)
            if d.lorawan is not None:
                batch.uplinks.append(UplinkRow(d.device_id, d.lorawan, msg.received_at))
            if d.status is not None:
                batch.statuses.append(StatusRow(d.device_id, msg.received_at, d.status))
            accepted[d.codec] += 1
        # calibration runs on chunks, yielding between them (see YIELD_EVERY); the humidity a pm25
        # model needs is looked up across the whole batch. The stuck/spike flags are set by the
        # batch writer, in the batch's transaction, from windows kept in the database (so they
        # do not depend on which replica reads a message, and a retried batch feeds nothing twice).
        if flagged:
            await self.calibrator.reload_forgotten()  # a registration or calibration just changed: reload first
            rh_at = self.calibrator.rh_index(flagged)
            for start in range(0, len(flagged), CHUNK_ROWS):
                batch.readings.extend(self.calibrator.apply(flagged[start : start + CHUNK_ROWS], rh_at))
                await asyncio.sleep(0)
        return Prepared(batch, messages, accepted, rejected, [(nd.device_id, nd.kind) for nd in batch.devices], seqs)

    async def _map_dev_euis(
        self, batch: Batch, decoded: list[tuple[Inbound, Decoded]], rejected: Counter[str]
    ) -> None:
        """Give each ChirpStack event the device that holds its EUI (devices.dev_eui), or dead-letter
        it: an EUI is never registered by its first uplink, since no device id can be made from it."""
        euis = [d.dev_eui for _, d in decoded if d.dev_eui is not None]
        if not euis:
            return
        by_eui = self.registry.by_dev_eui
        missing = {eui for eui in euis if eui not in by_eui}
        if missing:
            # in an outage the committer meets the same error and retries; treat them as still unknown
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self.registry.lookup_dev_euis(missing)
        keep = []
        for msg, d in decoded:
            if d.dev_eui is not None:
                device_id = by_eui.get(d.dev_eui)
                if device_id is None:
                    self._reject(batch, rejected, msg, f"LoRaWAN devEui {d.dev_eui} belongs to no device "
                                 "(citysense device register|update ID --dev-eui EUI)")
                    continue
                d.device_id = device_id
            keep.append((msg, d))
        decoded[:] = keep

    async def _apply_registry(
        self, batch: Batch, decoded: list[tuple[Inbound, Decoded]], rejected: Counter[str]
    ) -> None:
        """Register new ids (open network) or dead-letter their messages, status included (closed
        network); dead-letter a message outside its device's namespace (contracts.ids); flag every
        reading of a device that is not registered, in every batch."""
        unknown = {d.device_id for _, d in decoded if d.device_id not in self.registry.known}
        if unknown and not self.registry.accept_unknown:
            # in an outage the committer meets the same error and retries; treat them as still unknown
            with contextlib.suppress(*CONNECTION_ERRORS):
                unknown -= await self.registry.lookup_missing(unknown)
            keep = []
            for msg, d in decoded:
                if d.device_id in unknown:
                    self._reject(batch, rejected, msg, f"device {d.device_id!r} is not registered")
                else:
                    keep.append((msg, d))
            decoded[:] = keep
            unknown = set()
        new: dict[str, NewDevice] = {}
        if unknown:
            admitted = set(sorted(unknown)[: self.registry.new_budget.take(len(unknown))])
            if len(admitted) < len(unknown):
                limit = self.registry.new_budget.per_minute
                keep = []
                for msg, d in decoded:
                    if d.device_id in unknown and d.device_id not in admitted:
                        why = f"new devices: {limit} a minute registered already; {d.device_id!r} was not"
                        self._reject(batch, rejected, msg, why)
                    else:
                        keep.append((msg, d))
                decoded[:] = keep
            for _, d in decoded:
                if d.device_id in admitted and d.device_id not in new:
                    lat, lon = d.location if d.location else (None, None)
                    new[d.device_id] = NewDevice(d.device_id, d.kind, lat, lon)
        batch.devices.extend(new.values())
        kinds = self.registry.kinds
        for device in new.values():  # now, not at commit: the next batch is prepared while this one commits
            kinds.setdefault(device.device_id, device.kind)
        keep = []
        for msg, d in decoded:
            conflict = namespace_conflict(d.device_id, d.kind, kinds.get(d.device_id))
            if conflict is None:
                keep.append((msg, d))
            else:
                self._reject(batch, rejected, msg, conflict)
        decoded[:] = keep
        flag = int(Flag.UNREGISTERED_DEVICE)
        for _, d in decoded:
            if d.device_id not in self.registry.registered:
                d.readings = [(r[0], r[1], r[2], r[3], r[4], r[5] | flag, r[6]) for r in d.readings]

    @staticmethod
    def _reject(batch: Batch, rejected: Counter[str], msg: Inbound, reason: str) -> None:
        batch.rejected.append(Rejected(msg.received_at, msg.topic, msg.payload, reason))
        rejected[telemetry.reason_label(reason)] += 1

    async def batcher(self, stop: asyncio.Event) -> None:
        try:
            while True:
                messages = await self._collect(stop)
                if not messages:
                    if stop.is_set():
                        break
                    continue
                telemetry.MESSAGES_RECEIVED.inc(len(messages))
                telemetry.QUEUE_DEPTH.set(len(self.source.queue))
                await self._handover.put(await self.prepare(messages))
                self._committer_idle = False  # it has this batch now, though it may not have run yet
        finally:
            await self._handover.put(None)

    # -- committer -------------------------------------------------------------------------
    async def committer(self, hard_stop: asyncio.Event) -> None:
        while True:
            self._committer_idle = self._handover.empty()
            if self._committer_idle:
                self.source.wake()  # a batcher waiting for more messages hands over what it holds
            try:
                prepared = await self._handover.get()
            finally:
                self._committer_idle = False  # also when cancelled: a gone committer is never idle
            if prepared is None:
                return
            await self._commit(prepared, hard_stop)

    async def _commit(self, p: Prepared, hard_stop: asyncio.Event) -> None:
        try:
            result = await self._write_through_outages(p.batch, hard_stop)
        except BatchRefused as exc:
            log.error("event=db_write_refused error=%r action=isolate", str(exc))
            await self._commit_isolating(p, hard_stop)
            return
        if result is None:
            log.error("event=shutdown_with_uncommitted messages=%d (broker keeps them)", len(p.messages))
            return
        self._after_commit(p, result.readings_inserted, result.parking_inserted, result.seconds)

    async def _write_through_outages(self, batch: Batch, hard_stop: asyncio.Event) -> WriteResult | None:
        """Write, retrying with backoff while the database is unreachable; None if `hard_stop`
        ends the wait. A refusal (the data, not the connection) raises BatchRefused at once."""
        delay = 0.2
        while True:
            try:
                result = await self.writer.write(batch)
            except (*CONNECTION_ERRORS, *REFUSAL_ERRORS) as exc:
                if not is_outage(exc):
                    telemetry.DB_ERRORS.labels("refused").inc()
                    raise BatchRefused(str(exc)) from exc
                telemetry.DB_ERRORS.labels("connection").inc()
                telemetry.DB_UP.set(0)
                self.writer.discard()
                log.warning("event=db_write_failed kind=connection error=%r retry_in_s=%.1f", str(exc), delay)
            else:
                telemetry.DB_UP.set(1)
                return result
            if hard_stop.is_set():
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hard_stop.wait(), delay)
            delay = min(delay * 2, 10.0)

    async def _commit_isolating(self, p: Prepared, hard_stop: asyncio.Event) -> None:
        """A batch the database refuses (not an outage): write message by message, and
        dead-letter the ones it still refuses, so one poison message cannot stall the stream.
        Outages meanwhile are waited out as for any batch; each message is acked once stored."""
        for msg in p.messages:
            single = await self.prepare([msg])
            try:
                result = await self._write_through_outages(single.batch, hard_stop)
            except BatchRefused as exc:
                reason = f"database refused: {exc}".replace("\x00", "")
                dead = Prepared(
                    Batch(rejected=[Rejected(msg.received_at, msg.topic, msg.payload, reason)]), [msg],
                    Counter(), Counter({"database refused": 1}), [],
                )
                try:
                    result = await self._write_through_outages(dead.batch, hard_stop)
                except BatchRefused:
                    log.exception("event=dead_letter_refused topic=%s (message dropped)", msg.topic[:120])
                    result = WriteResult(0, 0, 0, 0.0)
                single = dead
            if result is None:
                log.error("event=shutdown_with_uncommitted messages=%d (broker keeps them)", len(p.messages))
                return
            self._after_commit(single, result.readings_inserted, result.parking_inserted, result.seconds)

    def _after_commit(self, p: Prepared, readings: int, parking: int, seconds: float) -> None:
        self.source.ack(p.messages)
        if self.receipts is not None:
            self.receipts.note(p.stored_seqs)
        self.registry.note_new(p.new_devices)
        self.committed_messages += len(p.messages)
        now = time.time()
        if p.messages:
            telemetry.LAG_SECONDS.observe(now - p.messages[0].received_at)
        telemetry.BATCH_SIZE.observe(len(p.messages))
        telemetry.COMMIT_SECONDS.observe(seconds)
        telemetry.MESSAGES_ACKED.inc(len(p.messages))
        telemetry.ROWS_WRITTEN.labels("readings").inc(readings)
        telemetry.ROWS_WRITTEN.labels("parking_events").inc(parking)
        telemetry.DUPLICATES.inc(max(0, len(p.batch.readings) - readings))
        for codec, n in p.accepted.items():
            telemetry.MESSAGES_ACCEPTED.labels(codec).inc(n)
        for reason, n in p.rejected.items():
            telemetry.MESSAGES_REJECTED.labels(reason).inc(n)
        log.debug("event=batch_committed messages=%d readings=%d ms=%.1f", len(p.messages), readings, seconds * 1000)
