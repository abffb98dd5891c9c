"""History files `citysense import` reads, each turned into chunks of (device, Unix time, metric, value) rows.

Three layouts, one module each would be three screens of parsing; they share the chunking:

* **CSV** ``device,time,metric,value`` (a box's SD-card log, a research dataset): times in
  ISO 8601 with an offset (``2025-03-01T08:00:00+08:00``, ``...Z``) or Unix seconds; naive
  times need a zone (``tz``), because guessing one shifts every reading by hours.
* **LASS history JSON** (pm25.lass-net.org ``/API-1.0.0/device/<id>/history/``): an object
  with ``device_id`` and ``feeds``; each feed is either a flat record or ``{"AirBox": [{time:
  record}, ...]}``; a record carries ``timestamp`` (ISO) or ``date`` + ``time`` (UTC) and the
  LASS sensor keys, mapped to metrics as the live LASS codec maps them (`KNOWN_SENSOR_KEYS`).
* **MOENV station file** (reference stations): read by `calibration.reference_import`, the
  one MOENV parser; its hourly PM2.5 and RH become readings at each hour's start, under the
  device id given.

A row that cannot be read (a bad number or time) is refused with its line and reason and
the rest goes on; a file that is not the layout at all raises HistoryFormatError.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calibration.reference_import import ReferenceFormatError, read_reference
from gateway.codecs.lass import KNOWN_SENSOR_KEYS

HistoryFormat = Literal["csv", "lass-json", "moenv"]
CHUNK_ROWS = 50_000
REFUSALS_KEPT = 20  # the first refusals are reported with their line; the rest are counted

# (device id, Unix seconds, metric, value)
HistoryRow = tuple[str, float, str, float]


class HistoryFormatError(ValueError):
    """The file is not the layout it was given as; the message says where and why."""


@dataclass(slots=True)
class HistoryChunk:
    """Rows read, rows refused (with `where: reason`), and how far into the file (for the progress bar)."""

    rows: list[HistoryRow] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    refused_count: int = 0
    done: int = 0  # progress units (bytes or records) read so far

    def refuse(self, where: str, reason: str) -> None:
        self.refused_count += 1
        if len(self.refused) < REFUSALS_KEPT:
            self.refused.append(f"{where}: {reason}")


def _zone(tz: str | None) -> ZoneInfo | None:
    try:
        return ZoneInfo(tz) if tz else None
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HistoryFormatError(f"unknown time zone {tz!r}") from exc


class TimeParser:
    """ISO 8601 or Unix seconds to Unix seconds, memoised: a history file repeats each time once per metric."""

    def __init__(self, tz: str | None) -> None:
        self.zone = _zone(tz)
        self.memo: dict[str, float] = {}

    def __call__(self, text: str) -> float:
        seconds = self.memo.get(text)
        if seconds is not None:
            return seconds
        if len(self.memo) > 100_000:
            self.memo.clear()
        stripped = text.strip()
        try:
            seconds = float(stripped)
        except ValueError:
            try:
                moment = datetime.fromisoformat(stripped)
            except ValueError:
                raise ValueError(f"time {stripped[:40]!r} is neither ISO 8601 nor Unix seconds") from None
            if moment.tzinfo is None:
                if self.zone is None:
                    raise ValueError(f"time {stripped[:40]!r} has no UTC offset; add one or pass --tz") from None
                moment = moment.replace(tzinfo=self.zone)
            seconds = moment.timestamp()
        self.memo[text] = seconds
        return seconds


def count_units(path: Path, fmt: HistoryFormat) -> int:
    """The progress bar's total: the file's size in bytes (CSV) or 1 (the others are read whole)."""
    return path.stat().st_size if fmt == "csv" else 1


def read_csv(path: Path, *, tz: str | None = None, chunk_rows: int = CHUNK_ROWS) -> Iterator[HistoryChunk]:
    """Chunks of a ``device,time,metric,value`` file (columns found by name, in any order)."""
    parse_time = TimeParser(tz)
    with path.open("rb") as raw:
        header_line = raw.readline()
        header = [h.strip().lower() for h in header_line.decode("utf-8-sig").strip().split(",")]
        missing = [c for c in ("device", "time", "metric", "value") if c not in header]
        if missing:
            raise HistoryFormatError(
                f"{path.name}: header lacks {missing} (need device,time,metric,value; got {header})"
            )
        i_dev, i_time, i_metric, i_value = (header.index(c) for c in ("device", "time", "metric", "value"))
        width = max(i_dev, i_time, i_metric, i_value) + 1
        line = 1
        while True:
            block = raw.readlines(8 * 1024 * 1024)
            if not block:
                break
            chunk = HistoryChunk()
            for text in b"".join(block).decode("utf-8").splitlines():
                line += 1
                # a plain line is split on commas; only a quoted one needs the csv module
                record = next(csv.reader([text])) if '"' in text else text.split(",")
                if not text:
                    continue
                if len(record) < width:
                    chunk.refuse(f"line {line}", f"expected {len(header)} columns, got {len(record)}")
                    continue
                try:
                    ts = parse_time(record[i_time])
                    value = float(record[i_value])
                except ValueError as exc:
                    chunk.refuse(f"line {line}", str(exc))
                    continue
                chunk.rows.append((record[i_dev].strip(), ts, record[i_metric].strip(), value))
                if len(chunk.rows) >= chunk_rows:
                    chunk.done = raw.tell()
                    yield chunk
                    chunk = HistoryChunk()
            chunk.done = raw.tell()
            yield chunk


def _lass_records(doc: Any) -> Iterator[dict[str, Any]]:
    feeds = doc.get("feeds") if isinstance(doc, dict) else None
    if not isinstance(feeds, list):
        raise HistoryFormatError("LASS history JSON needs an object with a 'feeds' list")
    for feed in feeds:
        if not isinstance(feed, dict):
            continue
        if any(k in feed for k in ("timestamp", "date", *KNOWN_SENSOR_KEYS)):
            yield feed
            continue
        for entries in feed.values():  # {"AirBox": [{"2025-03-01T00:00:00Z": {...}}, ...]}
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, dict):
                    continue
                for stamp, record in entry.items():
                    if isinstance(record, dict):
                        yield {"timestamp": stamp, **record}


def read_lass_json(path: Path, *, tz: str | None = None) -> Iterator[HistoryChunk]:
    """One chunk of a LASS history JSON (the file is read whole: these downloads are one device's history)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise HistoryFormatError(f"{path.name}: not readable JSON ({exc})") from exc
    parse_time = TimeParser(tz or "UTC")
    top_device = doc.get("device_id") if isinstance(doc, dict) else None
    chunk = HistoryChunk()
    for n, record in enumerate(_lass_records(doc), start=1):
        device = str(record.get("device_id") or top_device or "").strip()
        if not device:
            chunk.refuse(f"record {n}", "no device_id in the record or the file")
            continue
        stamp = record.get("timestamp") or (
            f"{record.get('date')}T{record.get('time')}+00:00" if record.get("date") and record.get("time") else None
        )
        try:
            ts = parse_time(str(stamp)) if stamp else math.nan
        except ValueError as exc:
            chunk.refuse(f"record {n}", str(exc))
            continue
        if not math.isfinite(ts):
            chunk.refuse(f"record {n}", "no timestamp (nor date and time)")
            continue
        for key, metric in KNOWN_SENSOR_KEYS.items():
            if key in record and record[key] not in (None, ""):
                try:
                    chunk.rows.append((device, ts, metric, float(record[key])))
                except (TypeError, ValueError):
                    chunk.refuse(f"record {n}", f"{key} {str(record[key])[:40]!r} is not a number")
    chunk.done = 1
    yield chunk


def read_moenv_station(path: Path, *, device: str, station: str | None = None) -> Iterator[HistoryChunk]:
    """One chunk of a MOENV station file's PM2.5 and RH hours, stored under `device`."""
    try:
        series = read_reference(path, fmt="moenv", station=station)
    except ReferenceFormatError as exc:
        raise HistoryFormatError(f"{path.name}: {exc}") from exc
    chunk = HistoryChunk()
    seconds = series.times.astype("datetime64[s]").astype("int64").tolist()
    pm25 = series.pm25.tolist()
    rh = series.rh.tolist() if series.rh is not None else [math.nan] * len(pm25)
    for ts, pm, hum in zip(seconds, pm25, rh, strict=True):
        if math.isfinite(pm):
            chunk.rows.append((device, float(ts), "pm25", pm))
        if math.isfinite(hum):
            chunk.rows.append((device, float(ts), "rh", hum))
    chunk.done = 1
    yield chunk
