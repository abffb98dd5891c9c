"""Read reference-station hourly PM2.5 (and RH) into an `HourlySeries` on the UTC hour grid.

Two formats are understood:

* **MOENV station file** (Taiwan Ministry of Environment, air-quality monitoring network
  yearly/monthly downloads): one row per day and item, hours across. Recent files have the
  header ``測站,日期,測項,00,01,...,23`` (UTF-8, often a trailing comma); older ones
  ``日期,測站,測項,...`` with hours ``00..23`` or ``1..24`` (Big5/cp950). Hour ``00`` (or
  ``1``) is 00:00-00:59 Taiwan time (UTC+8). Cells with a flag (``#`` instrument check,
  ``*`` program check, ``x`` manual check, ``A`` system failure, ``NR`` no rain) or a
  flag suffixed to a number are invalid and become gaps, because MOENV itself excludes
  them from statistics.
* **Generic CSV** with header ``time,pm25`` or ``time,pm25,rh``: ISO 8601 times at the
  start of the hour. Times must carry an offset (``2025-03-01T08:00+08:00``, ``...Z``);
  naive times need an explicit `tz`, because guessing the zone shifts every pair by hours
  and quietly ruins the fit.

Handling of bad input (all errors are `ReferenceFormatError` with the line number):
duplicate hours are refused; times not on the hour are refused (average to hours first);
missing hours stay gaps and are counted in `notes`; values in mg/m³ must be declared with
``unit="mg/m3"`` (they are multiplied by 1000), and a µg/m³ file whose values all look like
mg/m³ is refused rather than fitted a thousand times off.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from calibration.series import HourlySeries, to_datetime64

TAIPEI = ZoneInfo("Asia/Taipei")
Unit = Literal["ug/m3", "mg/m3"]
ReferenceFormat = Literal["auto", "moenv", "generic"]

_MOENV_ITEMS = {"PM2.5": "pm25", "PM25": "pm25", "RH": "rh"}
_MOENV_FLAG_RE = re.compile(r"^-?\d*\.?\d+\s*[#*xXA]$")
_NUMBER_RE = re.compile(r"^-?\d*\.?\d+$")


class ReferenceFormatError(ValueError):
    """A reference file cannot be read as hourly reference data; the message says where and why."""


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp950"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ReferenceFormatError("file is neither UTF-8 nor Big5 (cp950) text")


def _unit_factor(unit: str) -> float:
    normalised = unit.replace("µ", "u").replace("μ", "u").replace("³", "3").lower()
    if normalised in ("ug/m3", "ugm-3"):
        return 1.0
    if normalised in ("mg/m3", "mgm-3"):
        return 1000.0
    raise ReferenceFormatError(f"unknown unit {unit!r}; use 'ug/m3' or 'mg/m3'")


def _check_not_mg(values: np.ndarray, factor: float) -> None:
    finite = values[np.isfinite(values)]
    if factor == 1.0 and finite.size >= 24 and float(np.max(finite)) < 1.0:
        raise ReferenceFormatError(
            f"all {finite.size} PM2.5 values are below 1 (max {float(np.max(finite)):.3f}): this looks like mg/m³; "
            "pass unit='mg/m3' (CLI: --unit mg/m3) if so"
        )


def _series(
    rows: dict[np.datetime64, dict[str, float]], notes: list[str], factor: float
) -> HourlySeries:
    if not rows:
        raise ReferenceFormatError("no hourly PM2.5 rows found")
    times = np.array(sorted(rows), dtype="datetime64[s]")
    pm25 = np.array([rows[t].get("pm25", np.nan) for t in times], dtype=np.float64) * factor
    rh_values = np.array([rows[t].get("rh", np.nan) for t in times], dtype=np.float64)
    rh = rh_values if bool(np.isfinite(rh_values).any()) else None
    _check_not_mg(pm25, factor)
    series = HourlySeries(times=times, pm25=pm25, rh=rh, notes=tuple(notes))
    missing = series.missing_hours()
    if missing:
        notes.append(f"{missing} hour(s) without a valid PM2.5 value between the first and last hour; left as gaps")
    return HourlySeries(times=times, pm25=pm25, rh=rh, notes=tuple(notes))


def _moenv_cell(cell: str) -> tuple[float, bool]:
    """(value, was_flagged): flagged or empty cells are NaN."""
    text = cell.strip()
    if _NUMBER_RE.match(text):
        return float(text), False
    return float("nan"), bool(text)


def _moenv_date(text: str, line: int) -> datetime:
    head = text.strip().split(" ")[0].replace("-", "/")
    try:
        day = datetime.strptime(head, "%Y/%m/%d")
    except ValueError as exc:
        raise ReferenceFormatError(f"line {line}: date {text!r} is not YYYY/MM/DD") from exc
    return day.replace(tzinfo=TAIPEI)


def read_moenv(text: str, *, station: str | None = None, unit: str = "ug/m3") -> HourlySeries:
    """Parse a MOENV station CSV (see the module docstring for the layout)."""
    factor = _unit_factor(unit)
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    for required in ("測站", "日期", "測項"):
        if required not in header:
            raise ReferenceFormatError(f"not a MOENV station file: header lacks {required!r} (header: {header[:5]})")
    hour_cols = [(i, h) for i, h in enumerate(header) if h.isdigit()]
    labels = sorted(int(h) for _, h in hour_cols)
    if labels == list(range(24)):
        offset = 0
    elif labels == list(range(1, 25)):
        offset = 1
    else:
        raise ReferenceFormatError(f"MOENV hour labels must be 00-23 or 1-24, got {[h for _, h in hour_cols]}")
    i_station, i_date, i_item = header.index("測站"), header.index("日期"), header.index("測項")
    stations: set[str] = set()
    rows: dict[np.datetime64, dict[str, float]] = {}
    seen: dict[tuple[str, str, str], int] = {}
    flagged = 0
    for line, record in enumerate(reader, start=2):
        if not record or all(not cell.strip() for cell in record):
            continue
        item = _MOENV_ITEMS.get(record[i_item].strip().upper())
        site = record[i_station].strip()
        if item is None:
            continue
        if station is not None and site != station:
            continue
        stations.add(site)
        key = (site, record[i_date].strip().split(" ")[0], item)
        if key in seen:
            raise ReferenceFormatError(
                f"line {line}: duplicate {item} row for {key[0]} {key[1]} (first on line {seen[key]})"
            )
        seen[key] = line
        day = _moenv_date(record[i_date], line)
        for column, label in hour_cols:
            value, was_flagged = _moenv_cell(record[column] if column < len(record) else "")
            flagged += was_flagged
            start = day + timedelta(hours=int(label) - offset)
            rows.setdefault(to_datetime64(start), {})[item] = value
    if len(stations) > 1:
        raise ReferenceFormatError(f"file holds several stations {sorted(stations)}; choose one with station=...")
    notes = [f"MOENV station {next(iter(stations))}, Taiwan time (UTC+8) converted to UTC"] if stations else []
    if flagged:
        notes.append(f"{flagged} flagged/invalid MOENV cell(s) (#, *, x, A, NR) treated as missing")
    return _series(rows, notes, factor)


def _parse_time(text: str, tz: ZoneInfo | None, line: int) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ReferenceFormatError(f"line {line}: time {text!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        if tz is None:
            raise ReferenceFormatError(
                f"line {line}: time {text!r} has no UTC offset; add one (e.g. +08:00) or pass tz='Asia/Taipei' (--tz)"
            )
        moment = moment.replace(tzinfo=tz)
    if moment.minute or moment.second or moment.microsecond:
        raise ReferenceFormatError(
            f"line {line}: time {text!r} is not on the hour; the reference must be hourly averages "
            "labelled by the start of the hour"
        )
    return moment


def _generic_value(text: str, line: int, column: str) -> float:
    cell = text.strip()
    if cell == "" or cell.lower() in ("nan", "na", "null"):
        return float("nan")
    try:
        return float(cell)
    except ValueError as exc:
        raise ReferenceFormatError(f"line {line}: {column} value {cell!r} is not a number") from exc


def read_generic(text: str, *, tz: str | None = None, unit: str = "ug/m3") -> HourlySeries:
    """Parse a ``time,pm25[,rh]`` CSV (see the module docstring for the rules)."""
    factor = _unit_factor(unit)
    try:
        zone = ZoneInfo(tz) if tz else None
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReferenceFormatError(f"unknown time zone {tz!r}") from exc
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if "time" not in header or "pm25" not in header:
        raise ReferenceFormatError(f"generic reference needs a header with 'time' and 'pm25', got {header}")
    i_time, i_pm = header.index("time"), header.index("pm25")
    i_rh = header.index("rh") if "rh" in header else None
    rows: dict[np.datetime64, dict[str, float]] = {}
    first_line: dict[np.datetime64, int] = {}
    for line, record in enumerate(reader, start=2):
        if not record or all(not cell.strip() for cell in record):
            continue
        if len(record) <= max(i_time, i_pm, i_rh or 0):
            raise ReferenceFormatError(f"line {line}: expected {len(header)} columns, got {len(record)}")
        stamp = to_datetime64(_parse_time(record[i_time], zone, line))
        if stamp in rows:
            raise ReferenceFormatError(
                f"line {line}: duplicate hour {stamp}Z (first on line {first_line[stamp]}); one value per hour"
            )
        first_line[stamp] = line
        values = {"pm25": _generic_value(record[i_pm], line, "pm25")}
        if i_rh is not None:
            values["rh"] = _generic_value(record[i_rh], line, "rh")
        rows[stamp] = values
    return _series(rows, [], factor)


def detect_format(text: str) -> Literal["moenv", "generic"]:
    """MOENV if the header names the station/date/item columns, generic otherwise."""
    first = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    return "moenv" if "測項" in first and "測站" in first else "generic"


def read_reference(
    path: Path | str,
    *,
    fmt: ReferenceFormat = "auto",
    station: str | None = None,
    tz: str | None = None,
    unit: str = "ug/m3",
) -> HourlySeries:
    """Read a reference file from disk in the given (or detected) format."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ReferenceFormatError(f"cannot read {file}: {exc.strerror}") from exc
    return parse_reference(data, fmt=fmt, station=station, tz=tz, unit=unit)


def parse_reference(
    data: bytes | str,
    *,
    fmt: ReferenceFormat = "auto",
    station: str | None = None,
    tz: str | None = None,
    unit: str = "ug/m3",
) -> HourlySeries:
    """Read a reference file's content (bytes: UTF-8 or Big5) in the given (or detected) format."""
    text = _decode(data) if isinstance(data, bytes) else data.lstrip("\ufeff")
    chosen = detect_format(text) if fmt == "auto" else fmt
    if chosen == "moenv":
        return read_moenv(text, station=station, unit=unit)
    return read_generic(text, tz=tz, unit=unit)

