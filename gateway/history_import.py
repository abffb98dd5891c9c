"""History through the live data's front door: validation, registry rules, calibration, stuck/spike flags, one writer.

`citysense import` hands chunks of (device, time, metric, value) columns here, and each chunk
takes the gateway's own steps, with the gateway's own objects (a column at a time where a rule
has a column form beside its scalar one, tested to agree; the scalar rule for the other rows):

* `gateway.validation.metric_value` (ranges, sentinels, unknown metrics: the same flags and
  NULL values as live) and `resolve_history_time` (any age accepted, flagged IMPORTED; the
  live rule that re-stamps readings older than 14 days with CLOCK_SKEW is for live data only);
* the device registry (`DeviceRegistry`): an unknown id is registered as unregistered on an
  open network (`CITYSENSE_ACCEPT_UNKNOWN_DEVICES`) or refused on a closed one, readings of an
  unregistered device carry UNREGISTERED_DEVICE, and an id of another namespace is refused
  (`contracts.ids.namespace_conflict`), as `Pipeline` does for messages;
* calibration by the one engine (`calibration.engine.calibrate_series`, the column form of
  `calibrate`, per device and metric) with the stored versions `Calibrator` holds;
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
import gc
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from calibration.engine import calibrate_series, humidity_column
from contracts.flags import Flag
from contracts.ids import ANY_DEVICE_ID, namespace_conflict
from contracts.records import DecodeError, ReadingRow
from gateway.anomaly_flags import STUCK_SPIKE_RULE
from gateway.calibration_step import Calibrator
from gateway.device_registry import DeviceRegistry
from gateway.history_formats import REFUSALS_KEPT, HistoryChunk
from gateway.validation import metric_value, plain_history_times, plain_metric_values, resolve_history_time
from ingest.batch_writer import Batch, BatchWriter
from ingest.device_store import NewDevice

_UNREGISTERED = int(Flag.UNREGISTERED_DEVICE)
Span = tuple[str, str, float, float]  # (device, metric, first, last Unix seconds) of a chunk's series
_IMPORTED = int(Flag.IMPORTED)
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
        at = np.array(times, dtype=np.float64)
        lo, hi = datetime.fromtimestamp(float(at.min()), UTC), datetime.fromtimestamp(float(at.max()), UTC)
        self.first = lo if self.first is None else min(self.first, lo)
        self.last = hi if self.last is None else max(self.last, hi)
        self.days.update(np.unique(np.floor_divide(at, DAY_S)).astype(np.int64).tolist())

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


@dataclass
class CheckedChunk:
    """A chunk's rows as columns after the live checks: time, device, metric, raw, flags, and
    whether the row is kept (not refused)."""

    times: npt.NDArray[np.float64]
    devices: list[str]
    metrics: list[str]
    raws: npt.NDArray[np.float64]
    flags: npt.NDArray[np.int64]
    keep: npt.NDArray[np.bool_]

    def device_rows(self) -> dict[str, npt.NDArray[np.intp]]:
        """Each device's row positions, devices in order of first appearance (a file is usually
        written device by device, so rows of one device come in runs and are found as runs)."""
        ids = np.array(self.devices, dtype=object)
        starts = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist(), len(ids)]
        runs: dict[str, list[npt.NDArray[np.intp]]] = {}
        for a, b in itertools.pairwise(starts):
            runs.setdefault(self.devices[a], []).append(np.arange(a, b))
        return {device: parts[0] if len(parts) == 1 else np.concatenate(parts) for device, parts in runs.items()}


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

    def _check(self, chunk: HistoryChunk, report: ImportReport) -> CheckedChunk:
        """The chunk's rows judged by the live rules; refusals go to the report.

        `resolve_history_time` and `metric_value` judge every row: a column at a time for the
        rows their plain case covers (`plain_history_times`, `plain_metric_values`: in the
        window, in range, hence time kept, IMPORTED, raw = value, no other flag), one call per
        row for the rest, which gives those rows their flags or their refusal reason."""
        n = len(chunk)
        checked = CheckedChunk(
            np.array(chunk.times, dtype=np.float64), chunk.devices, chunk.metrics,
            np.array(chunk.values, dtype=np.float64), np.full(n, _IMPORTED, dtype=np.int64), np.ones(n, dtype=np.bool_),
        )
        odd = np.flatnonzero(~(plain_history_times(checked.times, self.now)
                               & plain_metric_values(chunk.metrics, checked.raws))).tolist()
        if odd:
            checked.metrics = list(chunk.metrics)
        refused: list[str] = []
        for i in odd:
            device, ts, metric, value = chunk.devices[i], chunk.times[i], chunk.metrics[i], chunk.values[i]
            try:
                at, clock_flags = resolve_history_time(ts, self.now)
                name, raw, _to_calibrate, flags = metric_value(metric, value)
            except DecodeError as exc:
                refused.append(f"{device} {ts}: {exc}")
                checked.keep[i] = False
                continue
            checked.times[i], checked.metrics[i], checked.raws[i], checked.flags[i] = at, name, raw, flags | clock_flags
        report.refuse(refused, len(refused))
        return checked

    def _admit(self, checked: CheckedChunk, report: ImportReport) -> list[NewDevice]:
        """The registry's rules for each device of the chunk (see the module docstring): the rows
        of a refused device are dropped, those of an unregistered one flagged; the new devices."""
        registry = self.registry
        new: list[NewDevice] = []
        for device, rows in checked.device_rows().items():
            kept = int(checked.keep[rows].sum())
            if not kept:
                continue
            reason = None
            if not ANY_DEVICE_ID.match(device):
                reason = f"device id {device[:80]!r} is not a valid id"
            elif device not in registry.known and not registry.accept_unknown:
                reason = f"device {device!r} is not registered"
            else:
                reason = namespace_conflict(device, self.kind, registry.kinds.get(device))
            if reason is not None:
                report.refuse([reason], kept)
                checked.keep[rows] = False
                continue
            if device not in registry.known:
                new.append(NewDevice(device, self.kind))
                registry.note_new([(device, self.kind)])
                report.registered_new.add(device)
            report.devices.add(device)
            if device not in registry.registered:
                checked.flags[rows] |= _UNREGISTERED
        return new

    def _calibrated(self, checked: CheckedChunk) -> tuple[list[ReadingRow], list[Span]]:
        """The kept rows, in file order, with value and calibration id from the one engine
        (`calibrate_series` per device and metric; the humidity of a time is the device's first
        rh reading of that time in the chunk, as `Calibrator.rh_index` takes it for a batch),
        and each series' (device, metric, first, last time)."""
        n = len(checked.times)
        values = np.full(n, None, dtype=object)
        ids = np.full(n, None, dtype=object)
        metrics = np.array(checked.metrics, dtype=object)
        spans: list[Span] = []
        for device, positions in checked.device_rows().items():
            rows = positions[checked.keep[positions]]
            if not len(rows):
                continue
            history = self.calibrator.history(device)
            of_device = metrics[rows]
            rh_rows = rows[of_device == "rh"]
            rh_times, first = np.unique(checked.times[rh_rows], return_index=True)
            rh_values = humidity_column(checked.raws[rh_rows], checked.flags[rh_rows])[first]
            for metric in set(of_device.tolist()):
                these = rows[of_device == metric]
                at = checked.times[these]
                spans.append((device, metric, float(at.min()), float(at.max())))
                slot = np.clip(np.searchsorted(rh_times, at), 0, max(0, len(rh_times) - 1))
                rh = (np.where(rh_times[slot] == at, rh_values[slot], np.nan) if len(rh_times)
                      else np.full(len(at), np.nan))
                values[these], ids[these] = calibrate_series(
                    history, metric, at, checked.raws[these], checked.flags[these], rh
                )
        rows_out = zip(
            checked.times.tolist(), checked.devices, checked.metrics, checked.raws.tolist(), values.tolist(),
            checked.flags.tolist(), ids.tolist(), strict=True,
        )
        if checked.keep.all():
            return list(rows_out), spans
        return list(itertools.compress(rows_out, checked.keep.tolist())), spans

    def _prepare(
        self, chunks: Iterator[HistoryChunk], report: ImportReport
    ) -> tuple[Batch, list[Span], int] | None:
        """Read, validate, admit and calibrate the next chunk: (batch, its series' spans, progress),
        or None at the end."""
        chunk = next(chunks, None)
        if chunk is None:
            return None
        report.rows_read += len(chunk) + chunk.refused_count
        report.refuse(chunk.refused, chunk.refused_count)
        if not len(chunk):
            return Batch(), [], chunk.done
        checked = self._check(chunk, report)
        new = self._admit(checked, report)
        readings, spans = self._calibrated(checked)
        return Batch(readings=readings, devices=new), spans, chunk.done

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

        async def write(batch: Batch, spans: list[Span], done: int) -> None:
            if batch.readings or batch.devices:
                # a chunk over stored history goes straight to the merge, one over new time to the COPY
                result = await self.writer.write(batch, merge=await self.writer.holds_readings_within(spans))
                report.rows_stored += result.readings_inserted
                if result.readings_inserted:
                    report.touched([r[0] for r in batch.readings])
            if progress is not None:
                progress(done)

        collecting = gc.isenabled()
        gc.disable()  # millions of short-lived tuples and no reference cycles: the collector only costs time
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
            if collecting:
                gc.enable()
            if writing is not None:
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
        report.seconds = time.perf_counter() - started
        return report
