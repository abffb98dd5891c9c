"""Write one gateway batch atomically: binary COPY into staging tables, then an idempotent merge.

Guarantees, all implemented in `BatchWriter.write`:
- atomic: readings, parking events, status, new devices and dead letters of a batch commit
  in one transaction, or none of them does;
- idempotent: the merge is `INSERT ... ON CONFLICT DO NOTHING` on (device_id, metric, time)
  for readings, (device_id, time) for parking events and the payload digest for dead
  letters, so a batch replayed after a crash adds nothing the first try committed; a
  LoRaWAN uplink adds its parking event only if its ChirpStack deduplicationId is new to
  `lorawan_uplinks` (migration 0012), so a redelivered uplink is one event however late;
- ordered: the caller acknowledges MQTT messages only after `write` returns.
Times travel as float Unix seconds and become timestamptz inside PostgreSQL, which spares
the hot path one datetime object per reading.

Fast path (`citysense bench ingest` measures it): readings are COPYed straight into
`readings`. A batch holding any row already stored (a redelivery after a crash, a replay,
a duplicate within the batch) fails that COPY on the unique key, which rolls the whole
transaction back; the batch is then written again through the merge above (and the next
batches too, for a while, since redeliveries come in runs), so the result is the same
rows either way, and still one transaction. The float seconds reach the `timestamptz` column
through a connection-level codec that rounds exactly as PostgreSQL's `to_timestamp`
does, so both paths store the identical time and a redelivered row can never slip past
the unique key by a microsecond.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter

import asyncpg

from contracts.limits import DEAD_LETTER_PAYLOAD_BYTES, DEAD_LETTER_TOPIC_CHARS
from contracts.records import LorawanUplink, ParkingRow, ReadingRow
from ingest import latest_readings, series_windows
from ingest.device_store import NewDevice, auto_register
from ingest.series_windows import DeviceWindows, SeriesPlan, SeriesRule, WindowStore

log = logging.getLogger(__name__)

_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS stage_readings (
    ts double precision, device_id text, metric text, raw double precision,
    value double precision, flags integer, calibration_id integer
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_parking (
    ts double precision, device_id text, occupied boolean, mag double precision,
    batt_mv integer, temp double precision, ev text, flags integer
) ON COMMIT DELETE ROWS;
"""

_MERGE_READINGS = """
INSERT INTO readings (time, device_id, metric, raw, value, flags, calibration_id)
SELECT to_timestamp(ts), device_id, metric, raw, value, flags, calibration_id FROM stage_readings
ON CONFLICT (device_id, metric, time) DO NOTHING
"""

# the same merge, telling per series what it stored: all rows, and those the series rule judges
# ($1: the flags that keep a reading out of its window)
_MERGE_READINGS_BY_SERIES = f"""
WITH inserted AS ({_MERGE_READINGS} RETURNING device_id, metric, time, flags)
SELECT device_id, metric, count(*)::int, count(*) FILTER (WHERE flags & $1 = 0)::int,
       min(time) FILTER (WHERE flags & $1 = 0), max(time) FILTER (WHERE flags & $1 = 0)
FROM inserted GROUP BY device_id, metric
"""

_STORED_WITHIN = """
SELECT EXISTS (
    SELECT 1 FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[]) AS k(d, m, t0, t1)
    WHERE EXISTS (SELECT 1 FROM readings r WHERE r.device_id = k.d AND r.metric = k.m
                  AND r.time >= to_timestamp(k.t0) AND r.time <= to_timestamp(k.t1))
)
"""

_MERGE_PARKING = """
INSERT INTO parking_events (time, device_id, occupied, mag, batt_mv, temp, ev, flags)
SELECT to_timestamp(ts), device_id, occupied, mag, batt_mv, temp, ev, flags FROM stage_parking
ON CONFLICT (device_id, time) DO NOTHING
"""

_INSERT_REJECTED = """
INSERT INTO rejected_messages (received_at, topic, payload, payload_bytes, reason, digest)
SELECT to_timestamp(r), t, p, n, why, dg
FROM unnest($1::float8[], $2::text[], $3::bytea[], $4::int[], $5::text[], $6::bytea[]) AS u(r, t, p, n, why, dg)
ON CONFLICT (digest) DO NOTHING
"""

_UPSERT_STATUS = """
INSERT INTO device_status (device_id, online, fw, ip, rssi, heap, queued, status, updated_at)
SELECT d, o, f, i, r, h, q, s::jsonb, to_timestamp(u)
FROM unnest($1::text[], $2::bool[], $3::text[], $4::text[], $5::int[], $6::int[], $7::int[], $8::text[],
            $9::float8[]) AS x(d, o, f, i, r, h, q, s, u)
ON CONFLICT (device_id) DO UPDATE SET
    online = EXCLUDED.online, fw = COALESCE(EXCLUDED.fw, device_status.fw),
    ip = COALESCE(EXCLUDED.ip, device_status.ip), rssi = COALESCE(EXCLUDED.rssi, device_status.rssi),
    heap = COALESCE(EXCLUDED.heap, device_status.heap), queued = COALESCE(EXCLUDED.queued, device_status.queued),
    status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
WHERE device_status.updated_at <= EXCLUDED.updated_at
"""


# a payload seen again within this many seconds is a copy (the memory RecentPayloads kept per process)
PAYLOAD_MEMORY_S = 600.0
PAYLOAD_PRUNE_EVERY_S = 60.0

# the digests not seen within the memory: inserted, or refreshed from a copy older than the memory;
# a digest another open transaction is inserting waits for it (and is a copy once that one commits)
_REMEMBER_PAYLOADS = """
INSERT INTO payload_digests AS p (digest, received_at)
SELECT d, to_timestamp(r) FROM unnest($1::bytea[], $2::float8[]) AS u(d, r) ORDER BY d
ON CONFLICT (digest) DO UPDATE SET received_at = EXCLUDED.received_at
   WHERE p.received_at < EXCLUDED.received_at - make_interval(secs => $3)
RETURNING digest
"""
_PRUNE_PAYLOADS = "DELETE FROM payload_digests WHERE received_at < to_timestamp($1)"

# uplinks whose deduplicationId is new (ON CONFLICT DO NOTHING also skips a repeat within the batch);
# one waiting on another open transaction's insert of the same id is skipped once that one commits
_REMEMBER_UPLINKS = """
INSERT INTO lorawan_uplinks (deduplication_id, device_id, dev_eui, application_id, time, f_cnt, f_port, rssi, snr,
                             gateway_id, gateways, received_at)
SELECT u, d, e, a, to_timestamp(t), fc, fp, r, s, g, n, to_timestamp(ra)
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::int8[], $7::int4[], $8::int4[],
            $9::float8[], $10::text[], $11::int4[], $12::float8[]) AS x(u, d, e, a, t, fc, fp, r, s, g, n, ra)
ORDER BY u
ON CONFLICT (deduplication_id) DO NOTHING
RETURNING deduplication_id::text
"""

_DEVICE = itemgetter(1)  # a reading row's device id
READING_COLUMNS = ("time", "device_id", "metric", "raw", "value", "flags", "calibration_id")
MERGE_BATCHES_AFTER_CONFLICT = 20  # after a conflict, redeliveries usually continue for a while
_PG_EPOCH_UNIX_S = 946_684_800.0  # 2000-01-01T00:00:00Z
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _timestamptz_out(value: float | datetime) -> tuple[int]:
    """Binary timestamptz (microseconds since 2000-01-01) from Unix seconds, rounded as
    PostgreSQL's to_timestamp(double precision) rounds (rint: half to even); datetimes as usual."""
    if type(value) is float:  # every reading's time on the COPY path: tested first
        return (round((value - _PG_EPOCH_UNIX_S) * 1_000_000),)
    if isinstance(value, datetime):
        delta = value - _PG_EPOCH
        return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds,)
    return (round((value - _PG_EPOCH_UNIX_S) * 1_000_000),)


def _timestamptz_in(value: tuple[int]) -> datetime:
    return _PG_EPOCH + timedelta(microseconds=value[0])


@dataclass(slots=True)
class Rejected:
    received_at: float
    topic: str
    payload: bytes
    reason: str

    def digest(self) -> bytes:
        """Identity of a dead letter: the same bytes on the same topic are one letter."""
        return hashlib.sha256(self.topic.encode("utf-8", "replace") + b"\0" + self.payload).digest()


@dataclass(slots=True)
class StatusRow:
    device_id: str
    received_at: float
    fields: dict[str, object]


@dataclass(slots=True)
class OncePayload:
    """A message whose readings are stored only if no gateway stored its payload within
    PAYLOAD_MEMORY_S: its readings are the batch's readings of `device_id` at `time`."""

    digest: bytes
    received_at: float
    device_id: str
    time: float

    @staticmethod
    def of(payload: bytes, received_at: float, device_id: str, time: float) -> OncePayload:
        return OncePayload(hashlib.blake2b(payload, digest_size=16).digest(), received_at, device_id, time)


@dataclass(slots=True)
class UplinkRow:
    """A LoRaWAN uplink mapped to its device: its parking event is stored once per deduplicationId."""

    device_id: str
    uplink: LorawanUplink
    received_at: float

    def parking_row(self) -> ParkingRow:
        u = self.uplink
        return (u.time, self.device_id, u.occupied, u.mag, u.batt_mv, u.temp, u.ev, u.flags)


@dataclass(slots=True)
class Batch:
    readings: list[ReadingRow] = field(default_factory=list)
    parking: list[ParkingRow] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    devices: list[NewDevice] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    once: list[OncePayload] = field(default_factory=list)  # messages that may be a copy of one already stored
    uplinks: list[UplinkRow] = field(default_factory=list)  # LoRaWAN uplinks, each possibly a redelivery


@dataclass(slots=True)
class WriteResult:
    readings_inserted: int
    parking_inserted: int
    rejected_inserted: int
    seconds: float


def _count(status: str) -> int:
    """Rows affected from a command tag such as 'INSERT 0 1000'."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


class BatchWriter:
    """Owns one asyncpg connection; call `write` from a single task (writes are sequential).

    With a `series_rule` (the gateway's stuck/spike rule) the writer also sets the rule's
    flag bits inside the batch transaction, from the series windows stored in the
    database (see ingest.series_windows); a rolled-back write leaves the windows unchanged.
    """

    def __init__(self, database_url: str, series_rule: SeriesRule | None = None) -> None:
        self.database_url = database_url
        self.series_rule = series_rule
        self._windows = WindowStore() if series_rule is not None else None
        self._conn: asyncpg.Connection | None = None
        self._merge_only = 0  # batches left that skip the COPY fast path
        self._pruned_payloads_at = 0.0

    async def connect(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        conn = await asyncpg.connect(self.database_url, timeout=10, command_timeout=60)
        await conn.execute(_STAGING_DDL + latest_readings.STAGING_DDL)
        await conn.set_type_codec(
            "timestamptz", schema="pg_catalog", encoder=_timestamptz_out, decoder=_timestamptz_in, format="tuple"
        )
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close(timeout=5)
            except Exception:  # noqa: BLE001 - closing a broken connection must not raise
                conn.terminate()

    def discard(self) -> None:
        """Drop a connection after an error; the next write reconnects."""
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def write(self, batch: Batch, *, merge: bool | None = None) -> WriteResult:
        """Write `batch` in one transaction. `merge` True sends its readings straight to the merge
        (the caller knows some are stored: `holds_readings_within`), False tries the COPY first
        whatever the recent conflicts; None (the gateway) decides by them."""
        await self.connect()
        conn = self._conn
        assert conn is not None
        started = time.perf_counter()
        if merge is None:
            fast = bool(batch.readings) and self._merge_only == 0
            if batch.readings and not fast:
                self._merge_only -= 1
        else:
            fast = bool(batch.readings) and not merge
        try:
            counts = await self._write_once(conn, batch, fast)
        except asyncpg.UniqueViolationError:
            if not fast:
                raise
            # some row is stored already: the whole transaction rolled back; write it again, merging
            self._merge_only = MERGE_BATCHES_AFTER_CONFLICT
            log.info("event=copy_conflict rows=%d action=merge", len(batch.readings))
            counts = await self._write_once(conn, batch, False)
        return WriteResult(*counts, time.perf_counter() - started)

    async def holds_readings_within(self, spans: Sequence[tuple[str, str, float, float]]) -> bool:
        """Whether `readings` holds a row of any (device, metric, first, last) series between its
        first and last time (Unix seconds, inclusive): a batch of those series would meet stored
        rows, so its COPY would fail and roll back before the merge (an import over stored history)."""
        if not spans:
            return False
        await self.connect()
        assert self._conn is not None
        found = await self._conn.fetchval(
            _STORED_WITHIN, [s[0] for s in spans], [s[1] for s in spans], [s[2] for s in spans],
            [s[3] for s in spans],
        )
        return bool(found)

    async def _write_once(self, conn: asyncpg.Connection, batch: Batch, fast: bool) -> tuple[int, int, int]:
        """One transaction; readings by COPY into `readings` (fast) or through the merge."""
        try:
            counts = await self._transaction(conn, batch, fast)
        except BaseException:
            if self._windows is not None:
                self._windows.forget()  # the failed transaction advanced windows it did not save
            raise
        if self._windows is not None:
            self._windows.committed()
        return counts

    async def _transaction(self, conn: asyncpg.Connection, batch: Batch, fast: bool) -> tuple[int, int, int]:
        readings_n = parking_n = rejected_n = 0
        async with conn.transaction():
            readings = await self._drop_copies(conn, batch) if batch.once else batch.readings
            readings, plan, stored = await self._judge_series(conn, batch, readings, fast)
            await auto_register(conn, batch.devices)  # the SQL lives in ingest/device_store.py
            if readings and fast:
                await conn.copy_records_to_table("readings", records=readings, columns=READING_COLUMNS)
                readings_n = len(readings)
            elif readings:
                await conn.copy_records_to_table("stage_readings", records=readings)
                if plan is None:
                    readings_n = _count(await conn.execute(_MERGE_READINGS))
                else:
                    assert self.series_rule is not None
                    per_series = await conn.fetch(_MERGE_READINGS_BY_SERIES, self.series_rule.no_window_flags)
                    readings_n = sum(r[2] for r in per_series)
                    series_windows.settle_after_merge(plan, [(r[0], r[1], r[3], r[4], r[5]) for r in per_series])
            if readings:
                await latest_readings.upsert_newest(conn, readings)
            if plan is not None:
                assert self.series_rule is not None and self._windows is not None
                _, recomputed = await series_windows.recompute(conn, self.series_rule, plan.recompute)
                plan.windows.update(recomputed)
                await self._windows.save(conn, series_windows.devices_to_save(stored, plan.windows))
            parking = batch.parking + await self._fresh_uplinks(conn, batch.uplinks) if batch.uplinks else batch.parking
            if parking:
                await conn.copy_records_to_table("stage_parking", records=parking)
                parking_n = _count(await conn.execute(_MERGE_PARKING))
            if batch.rejected:
                rej = batch.rejected
                rejected_n = _count(
                    await conn.execute(
                        _INSERT_REJECTED, [r.received_at for r in rej],
                        [r.topic[:DEAD_LETTER_TOPIC_CHARS] for r in rej],
                        [r.payload[:DEAD_LETTER_PAYLOAD_BYTES] for r in rej], [len(r.payload) for r in rej],
                        [r.reason[:1000] for r in rej], [r.digest() for r in rej],
                    )
                )
            if batch.statuses:
                await self._write_statuses(conn, batch.statuses)
        return readings_n, parking_n, rejected_n

    @staticmethod
    async def _fresh_uplinks(conn: asyncpg.Connection, uplinks: Sequence[UplinkRow]) -> list[ParkingRow]:
        """Record the uplinks in `lorawan_uplinks`; the parking rows of those not recorded before."""
        def col(get: Callable[[UplinkRow], object]) -> list[object]:
            return [get(r) for r in uplinks]

        fresh = {r[0] for r in await conn.fetch(
            _REMEMBER_UPLINKS, col(lambda r: r.uplink.deduplication_id), col(lambda r: r.device_id),
            col(lambda r: r.uplink.dev_eui), col(lambda r: r.uplink.application_id), col(lambda r: r.uplink.time),
            col(lambda r: r.uplink.f_cnt), col(lambda r: r.uplink.f_port), col(lambda r: r.uplink.rssi),
            col(lambda r: r.uplink.snr), col(lambda r: r.uplink.gateway_id), col(lambda r: r.uplink.gateways),
            col(lambda r: r.received_at),
        )}
        rows: list[ParkingRow] = []
        for row in uplinks:
            if row.uplink.deduplication_id in fresh:
                fresh.discard(row.uplink.deduplication_id)  # a repeat within the batch is a copy too
                rows.append(row.parking_row())
        return rows

    async def _drop_copies(self, conn: asyncpg.Connection, batch: Batch) -> list[ReadingRow]:
        """The batch's readings without those of payloads stored within PAYLOAD_MEMORY_S (by any
        gateway, or earlier in this batch); prunes older digests about once a minute."""
        first: dict[bytes, OncePayload] = {}
        for once in batch.once:
            first.setdefault(once.digest, once)
        fresh = {r[0] for r in await conn.fetch(
            _REMEMBER_PAYLOADS, list(first), [o.received_at for o in first.values()], PAYLOAD_MEMORY_S
        )}
        kept = {id(o) for o in first.values() if o.digest in fresh}
        # readings are told apart by (device, time): a copy received in the same instant as a kept
        # message shares its rows' unique key, and the write stores that key once anyway
        copies = {(o.device_id, o.time) for o in batch.once if id(o) not in kept}
        copies -= {(o.device_id, o.time) for o in batch.once if id(o) in kept}
        newest = max(o.received_at for o in batch.once)
        if newest - self._pruned_payloads_at > PAYLOAD_PRUNE_EVERY_S:
            await conn.execute(_PRUNE_PAYLOADS, newest - PAYLOAD_MEMORY_S)
            self._pruned_payloads_at = newest
        if not copies:
            return batch.readings
        devices = {c[0] for c in copies}
        return [r for r in batch.readings if r[1] not in devices or (r[1], r[0]) not in copies]

    async def _judge_series(
        self, conn: asyncpg.Connection, batch: Batch, readings: list[ReadingRow], fast: bool
    ) -> tuple[list[ReadingRow], SeriesPlan | None, dict[str, DeviceWindows]]:
        """The readings with the series rule's bits set from the stored windows, each
        (device, metric, time) once, under the locks of the batch's devices (held to commit),
        and the stored windows of its devices."""
        rule, store = self.series_rule, self._windows
        if rule is None or store is None or not readings:
            return readings, None, {}
        devices = set(map(_DEVICE, readings))  # C-level: this runs over every reading
        devices.update(r[1] for r in batch.parking)
        devices.update(d.device_id for d in batch.devices)
        devices.update(s.device_id for s in batch.statuses)
        await store.lock(conn, devices)
        groups, repeated = series_windows.series_of(rule, readings)
        stored = await store.load(conn, list({k[0] for k in groups})) if groups else {}
        # the merge may leave a series unsaved (settle_after_merge): its stored window must stay intact
        readings, plan = series_windows.flag_new_rows(rule, readings, groups, stored, copy_windows=not fast)
        if repeated:
            readings = [r for i, r in enumerate(readings) if i not in repeated]
        return readings, plan, stored

    @staticmethod
    async def _write_statuses(conn: asyncpg.Connection, statuses: Sequence[StatusRow]) -> None:
        import orjson  # noqa: PLC0415 - only status batches need it

        latest: dict[str, StatusRow] = {}
        for row in statuses:
            latest[row.device_id] = row
        rows = list(latest.values())

        def col(key: str) -> list[object]:
            return [r.fields.get(key) for r in rows]

        await conn.execute(
            _UPSERT_STATUS, [r.device_id for r in rows], col("online"), col("fw"), col("ip"), col("rssi"),
            col("heap"), col("queued"), [orjson.dumps(r.fields.get("raw", {})).decode() for r in rows],
            [r.received_at for r in rows],
        )
