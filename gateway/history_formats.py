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
from itertools import repeat
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

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
    """Rows read, as four columns (the importer checks them a column at a time), rows refused
    (with `where: reason`), and how far into the file (for the progress bar)."""

    devices: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    refused_count: int = 0
    done: int = 0  # progress units (bytes or records) read so far

    def __len__(self) -> int:
        return len(self.times)

    def append(self, device: str, ts: float, metric: str, value: float) -> None:
        self.devices.append(device)
        self.times.append(ts)
        self.metrics.append(metric)
        self.values.append(value)

    def rows(self) -> list[HistoryRow]:
        """The rows as (device, time, metric, value) tuples, in file order."""
        return list(zip(self.devices, self.times, self.metrics, self.values, strict=True))

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

    def column(self, texts: list[str]) -> list[float]:
        """``[self(t) for t in texts]``, computed a column at a time for the layouts history files
        use (``YYYY-MM-DDTHH:MM:SSZ`` and ``YYYY-MM-DDTHH:MM:SS+08:00``, all of one width): integer
        arithmetic on the digits, giving the seconds `datetime.fromisoformat(...).timestamp()`
        gives (tests/gateway/test_history_formats.py compares them). A text the arithmetic does
        not vouch for (another layout, an impossible date, a leap second) takes `__call__`,
        whose ValueError (the first) is raised."""
        width = len(texts[0]) if texts else 0
        if len(texts) < 64 or width not in (20, 25) or set(map(len, texts)) != {width}:
            return [self(t) for t in texts]
        try:
            data = "".join(texts).encode("ascii")
        except UnicodeEncodeError:
            return [self(t) for t in texts]
        n = len(texts)
        # one row per character position: the checks below each read one row
        codes = np.frombuffer(data, dtype=np.uint8).reshape(n, width).T.astype(np.int16)
        digit = codes - ord("0")

        def number(*positions: int) -> npt.NDArray[np.int64]:
            out = np.zeros(n, dtype=np.int64)
            for k in positions:
                out = out * 10 + digit[k].astype(np.int64)
            return out

        places = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18] + ([20, 21, 23, 24] if width == 25 else [])
        fits = (digit[places].astype(np.uint16) <= 9).all(axis=0)  # a negative wraps around: not a digit
        fits &= (codes[4] == ord("-")) & (codes[7] == ord("-")) & (codes[13] == ord(":")) & (codes[16] == ord(":"))
        fits &= (codes[10] == ord("T")) | (codes[10] == ord(" "))
        year, month, day = number(0, 1, 2, 3), number(5, 6), number(8, 9)
        hour, minute, second = number(11, 12), number(14, 15), number(17, 18)
        if width == 20:
            fits &= codes[19] == ord("Z")
            offset = np.zeros(n, dtype=np.int64)
        else:
            sign = np.where(codes[19] == ord("-"), -1, 1)
            fits &= ((codes[19] == ord("+")) | (codes[19] == ord("-"))) & (codes[22] == ord(":"))
            off_h, off_m = number(20, 21), number(23, 24)
            fits &= (off_h <= 23) & (off_m <= 59)
            offset = sign * (off_h * 3600 + off_m * 60)
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)]
        month_days = month_days + (leap & (month == 2))
        fits &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
        fits &= (hour <= 23) & (minute <= 59) & (second <= 59)
        seconds = (_days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
        out: list[float] = seconds.astype(np.float64).tolist()
        for i in np.flatnonzero(~fits).tolist():
            out[i] = self(texts[i])
        return out


def _days_from_civil(year: npt.NDArray[np.int64], month: npt.NDArray[np.int64], day: npt.NDArray[np.int64]) -> (
    npt.NDArray[np.int64]
):
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's days_from_civil), for years >= 1."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days: npt.NDArray[np.int64] = era * 146_097 + doe - 719_468
    return days


def count_units(path: Path, fmt: HistoryFormat) -> int:
    """The progress bar's total: the file's size in bytes (CSV) or 1 (the others are read whole)."""
    return path.stat().st_size if fmt == "csv" else 1


def read_csv(path: Path, *, tz: str | None = None, chunk_rows: int = CHUNK_ROWS) -> Iterator[HistoryChunk]:
    """Chunks of a ``device,time,metric,value`` file (columns found by name, in any order).

    The file is read in blocks of whole lines; a block is split into columns by C-level string
    methods (`_plain_columns`) when every line is plain (the header's column count, no quotes,
    every number and time readable), and otherwise line by line (`_block_by_line`), which
    refuses the lines it cannot read with their number. Both give the same rows."""
    parse_time = TimeParser(tz)
    with path.open("rb") as raw:
        header_line = raw.readline()
        header = [h.strip().lower() for h in header_line.decode("utf-8-sig").strip().split(",")]
        missing = [c for c in ("device", "time", "metric", "value") if c not in header]
        if missing:
            raise HistoryFormatError(
                f"{path.name}: header lacks {missing} (need device,time,metric,value; got {header})"
            )
        columns = (header.index("device"), header.index("time"), header.index("metric"), header.index("value"))
        line = 1
        while True:
            block = raw.readlines(BLOCK_BYTES)
            if not block:
                break
            lines = b"".join(block).decode("utf-8").splitlines()
            chunk = _plain_columns(lines, len(header), columns, parse_time)
            if chunk is None:
                chunk = _block_by_line(lines, line, len(header), columns, parse_time)
            line += len(lines)
            done = raw.tell()
            for first in range(0, max(1, len(chunk)), chunk_rows):
                part = HistoryChunk(
                    chunk.devices[first : first + chunk_rows], chunk.times[first : first + chunk_rows],
                    chunk.metrics[first : first + chunk_rows], chunk.values[first : first + chunk_rows],
                    chunk.refused if first == 0 else [], chunk.refused_count if first == 0 else 0, done,
                )
                yield part


BLOCK_BYTES = 8 * 1024 * 1024  # lines read at a time (about 200,000 readings)


def _stripped(column: list[str]) -> list[str]:
    """`column` with each text stripped; ids and metric names repeat, so each distinct text is stripped once."""
    distinct = {text: text.strip() for text in dict.fromkeys(column)}
    if all(k == v for k, v in distinct.items()):
        return column
    return list(map(distinct.__getitem__, column))


def _plain_columns(
    lines: list[str], width: int, columns: tuple[int, int, int, int], parse_time: TimeParser
) -> HistoryChunk | None:
    """The block's columns if every line is plain (see `read_csv`), else None (read it line by line)."""
    if set(map(str.count, lines, repeat(","))) != {width - 1}:
        return None  # a line with other columns than the header, or an empty line
    joined = ",".join(lines)
    if '"' in joined:
        return None
    cells = joined.split(",")
    i_dev, i_time, i_metric, i_value = columns
    stamps = cells[i_time::width]
    try:
        values = list(map(float, cells[i_value::width]))
        seconds = parse_time.column(stamps)
    except ValueError:
        return None
    return HistoryChunk(_stripped(cells[i_dev::width]), seconds, _stripped(cells[i_metric::width]), values)


def _block_by_line(
    lines: list[str], line: int, width: int, columns: tuple[int, int, int, int], parse_time: TimeParser
) -> HistoryChunk:
    """The block read line by line: lines that cannot be read are refused with their number
    (`line` is the number of the line before the block)."""
    i_dev, i_time, i_metric, i_value = columns
    needed = max(columns) + 1
    chunk = HistoryChunk()
    for text in lines:
        line += 1
        if not text:
            continue
        # a plain line is split on commas; only a quoted one needs the csv module
        record = next(csv.reader([text])) if '"' in text else text.split(",")
        if len(record) < needed:
            chunk.refuse(f"line {line}", f"expected {width} columns, got {len(record)}")
            continue
        try:
            ts = parse_time(record[i_time])
            value = float(record[i_value])
        except ValueError as exc:
            chunk.refuse(f"line {line}", str(exc))
            continue
        chunk.append(record[i_dev].strip(), ts, record[i_metric].strip(), value)
    return chunk


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


def read_lass_json(path: Path, *, tz: str | None = None, chunk_rows: int = CHUNK_ROWS) -> Iterator[HistoryChunk]:
    """Chunks of a LASS history JSON (the file is read whole: these downloads are one device's
    history; the chunks let the importer write one while it checks the next)."""
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
                    chunk.append(device, ts, metric, float(record[key]))
                except (TypeError, ValueError):
                    chunk.refuse(f"record {n}", f"{key} {str(record[key])[:40]!r} is not a number")
        if len(chunk) >= chunk_rows:
            yield chunk  # done stays 0: the progress total of a JSON file is 1, reached at its end
            chunk = HistoryChunk()
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
            chunk.append(device, float(ts), "pm25", pm)
        if math.isfinite(hum):
            chunk.append(device, float(ts), "rh", hum)
    chunk.done = 1
    yield chunk
