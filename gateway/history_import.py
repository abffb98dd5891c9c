"""History through the live data's front door: validation, registry rules, calibration, stuck/spike flags, one writer.

`citysense import` hands chunks of (device, time, metric, value) rows here, and each chunk
takes the gateway's own steps, with the gateway's own objects:

* `gateway.validation.metric_value` (ranges, sentinels, unknown metrics: the same flags and
  NULL values as live) and `resolve_history_time` (any age accepted, flagged IMPORTED; the
  live rule that re-stamps readings older than 14 days with CLOCK_SKEW is for live data only);
* the device registry (`DeviceRegistry`): an unknown id is registered as unregistered on an
  open network (`CITYSENSE_ACCEPT_UNKNOWN_DEVICES`) or refused on a closed one, readings of an
  unregistered device carry UNREGISTERED_DEVICE, and an id of another namespace is refused
  (`contracts.ids.namespace_conflict`), as `Pipeline` does for messages;
* calibration by `Calibrator` (the one engine, the stored versions);
* `BatchWriter` with the gateway's `STUCK_SPIKE_RULE`: binary COPY, the idempotent merge on
  (device, metric, time) when a row is stored already, and the stuck/spike flags judged
  from the series windows in the database (an import older than a device's live data is
  re-judged in time order by the writer's recompute path). A second import of the same
  file therefore adds nothing.

The caller refreshes the aggregates over `ImportReport.day_ranges()`: the UTC days of the
chunks that stored anything, merged into runs of consecutive days (an import of 2019 and of
2025 refreshes those two stretches, not the years between).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contracts.flags import Flag
from contracts.ids import ANY_DEVICE_ID, namespace_conflict
from contracts.records import DecodeError, ReadingRow
from gateway.anomaly_flags import STUCK_SPIKE_RULE
from gateway.calibration_step import Calibrator
from gateway.device_registry import DeviceRegistry
from gateway.history_formats import REFUSALS_KEPT, HistoryChunk
from gateway.validation import metric_value, resolve_history_time
from ingest.batch_writer import Batch, BatchWriter
from ingest.device_store import NewDevice

_UNREGISTERED = int(Flag.UNREGISTERED_DEVICE)
DAY_S = 86_400


@dataclass
class ImportReport:
    """What an import did; `first`/`last` bound the rows of the chunks that stored anything."""

    rows_read: int = 0
    rows_stored: int = 0
    rows_refused: int = 0
    refusals: list[str] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)
    registered_new: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None
    seconds: float = 0.0
    days: set[int] = field(default_factory=set)  # UTC days (Unix seconds // 86400) of the chunks that stored rows

    def refuse(self, reasons: Iterable[str], count: int) -> None:
        self.rows_refused += count
        for reason in reasons:
            if len(self.refusals) < REFUSALS_KEPT:
                self.refusals.append(reason)

    def touched(self, times: list[float]) -> None:
        lo, hi = datetime.fromtimestamp(min(times), UTC), datetime.fromtimestamp(max(times), UTC)
        self.first = lo if self.first is None else min(self.first, lo)
        self.last = hi if self.last is None else max(self.last, hi)
        self.days.update({int(t // DAY_S) for t in times})

    def day_ranges(self) -> list[tuple[datetime, datetime]]:
        """Runs of consecutive touched UTC days, as (first day's start, last day's start)."""
        runs: list[list[int]] = []
        for day in sorted(self.days):
            if runs and day == runs[-1][1] + 1:
                runs[-1][1] = day
            else:
                runs.append([day, day])
        return [(datetime.fromtimestamp(a * DAY_S, UTC), datetime.fromtimestamp(b * DAY_S, UTC)) for a, b in runs]

    def as_json(self) -> dict[str, object]:
        """The `citysense import --json` object (docs/calibration.md lists the fields)."""
        return {
            "rows_read": self.rows_read,
            "rows_stored": self.rows_stored,
            "rows_duplicate": self.rows_read - self.rows_stored - self.rows_refused,
            "rows_refused": self.rows_refused,
            "refusals": self.refusals,
            "devices": sorted(self.devices),
            "registered_new": sorted(self.registered_new),
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "refreshed_days": [[a.date().isoformat(), b.date().isoformat()] for a, b in self.day_ranges()],
            "seconds": round(self.seconds, 2),
            "readings_per_second": round(self.rows_read / self.seconds) if self.seconds > 0 else None,
        }


class HistoryImporter:
    """One import run: the gateway's registry, calibrator and writer, on one database."""

    def __init__(self, database_url: str, *, kind: str, accept_unknown: bool) -> None:
        self.kind = kind
        self.registry = DeviceRegistry(database_url, accept_unknown)
        self.calibrator = Calibrator(database_url)
        self.writer = BatchWriter(database_url, STUCK_SPIKE_RULE)
        self.now = time.time()

    async def __aenter__(self) -> HistoryImporter:
        await self.registry.refresh()
        await self.calibrator.refresh()
        await self.writer.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.writer.close()

    def _readings(self, chunk: HistoryChunk, report: ImportReport) -> dict[str, list[ReadingRow]]:
        """Validated rows per device; refusals go to the report."""
        by_device: dict[str, list[ReadingRow]] = {}
        refused: list[str] = []
        count = 0
        now = self.now
        for device, ts, metric, value in chunk.rows:
            try:
                at, clock_flags = resolve_history_time(ts, now)
                name, raw, to_calibrate, flags = metric_value(metric, value)
            except DecodeError as exc:
                count += 1
                refused.append(f"{device} {ts}: {exc}")
                continue
            rows = by_device.get(device)
            if rows is None:
                rows = by_device[device] = []
            rows.append((at, device, name, raw, to_calibrate, flags | clock_flags, None))
        report.refuse(refused, count)
        return by_device

    def _admit(self, by_device: dict[str, list[ReadingRow]], report: ImportReport) -> tuple[
        list[ReadingRow], list[NewDevice]
    ]:
        """The registry's rules for each device of the chunk (see the module docstring)."""
        registry = self.registry
        admitted: list[ReadingRow] = []
        new: list[NewDevice] = []
        for device, rows in by_device.items():
            reason = None
            if not ANY_DEVICE_ID.match(device):
                reason = f"device id {device[:80]!r} is not a valid id"
            elif device not in registry.known and not registry.accept_unknown:
                reason = f"device {device!r} is not registered"
            else:
                reason = namespace_conflict(device, self.kind, registry.kinds.get(device))
            if reason is not None:
                report.refuse([reason], len(rows))
                continue
            if device not in registry.known:
                new.append(NewDevice(device, self.kind))
                registry.note_new([(device, self.kind)])
                report.registered_new.add(device)
            report.devices.add(device)
            if device in registry.registered:
                admitted.extend(rows)
            else:
                admitted.extend((r[0], r[1], r[2], r[3], r[4], r[5] | _UNREGISTERED, r[6]) for r in rows)
        return admitted, new

    def _prepare(self, chunks: Iterator[HistoryChunk], report: ImportReport) -> tuple[Batch, int] | None:
        """Read, validate, admit and calibrate the next chunk: (batch, progress), or None at the end."""
        chunk = next(chunks, None)
        if chunk is None:
            return None
        report.rows_read += len(chunk.rows) + chunk.refused_count
        report.refuse(chunk.refused, chunk.refused_count)
        readings, new = self._admit(self._readings(chunk, report), report)
        calibrated = self.calibrator.apply(readings, self.calibrator.rh_index(readings)) if readings else []
        return Batch(readings=calibrated, devices=new), chunk.done

    async def import_chunks(
        self, chunks: Iterable[HistoryChunk], progress: Callable[[int], None] | None = None
    ) -> ImportReport:
        """Validate, admit, calibrate and write every chunk, one batch transaction each, in file order.

        The next chunk is prepared (in a worker thread) while the previous one is being
        written, as the gateway's batcher prepares while its committer writes; the writes
        themselves stay one at a time and in order.
        """
        report = ImportReport()
        started = time.perf_counter()
        source = iter(chunks)
        writing: asyncio.Task[None] | None = None

        async def write(batch: Batch, done: int) -> None:
            if batch.readings or batch.devices:
                result = await self.writer.write(batch)
                report.rows_stored += result.readings_inserted
                if result.readings_inserted:
                    report.touched([r[0] for r in batch.readings])
            if progress is not None:
                progress(done)

        try:
            while True:
                prepared = await asyncio.to_thread(self._prepare, source, report)
                if writing is not None:
                    await writing
                    writing = None
                if prepared is None:
                    break
                writing = asyncio.create_task(write(*prepared))
        finally:
            if writing is not None:
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
        report.seconds = time.perf_counter() - started
        return report
