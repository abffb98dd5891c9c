"""The LASS pipe format `|key=value|...` of existing LASS and AirBox devices.

A LASS device keeps its LASS `device_id` as its citysense id, exactly as sent. Keys
we know map to registry metrics; other sensor keys (`s_*`) are kept raw and flagged,
so a newer or older firmware's data is never silently dropped.
"""

from __future__ import annotations

import calendar
import math
import re

from contracts.flags import Flag
from contracts.ids import ANY_DEVICE_ID, check_device_id
from contracts.records import Decoded, DecodeError, ReadingRow
from gateway.validation import metric_value, resolve_time

KNOWN_SENSOR_KEYS = {"s_d0": "pm25", "s_d1": "pm10", "s_d2": "pm1", "s_t0": "t", "s_h0": "rh"}
METADATA_KEYS = frozenset(
    {"ver_format", "fake_gps", "app", "ver_app", "device_id", "date", "time", "tick", "device",
     "gps_lat", "gps_lon", "gps_fix", "gps_num", "gps_alt", "sats", "siteName", "sitename"}
)
_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_TIME = re.compile(r"^(\d{1,2}):(\d{1,2}):(\d{1,2})$")
_EXTRA_KEY = re.compile(r"^s_[a-z0-9]{1,8}$")
MAX_FIELDS = 64


def _fields(payload: bytes) -> dict[str, str]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("LASS payload is not UTF-8 text") from None
    text = text.strip()
    if not text.startswith("|"):
        raise DecodeError("LASS payload must start with '|'")
    fields: dict[str, str] = {}
    for part in text.strip("|").split("|"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise DecodeError(f"LASS field {part[:40]!r} is not key=value")
        fields[key.strip()] = value.strip()
        if len(fields) > MAX_FIELDS:
            raise DecodeError(f"LASS payload has more than {MAX_FIELDS} fields")
    return fields


def _device_time(fields: dict[str, str]) -> float | None:
    """Unix seconds from the UTC `date` and `time` fields, or None when absent or invalid."""
    date_m = _DATE.match(fields.get("date", ""))
    time_m = _TIME.match(fields.get("time", ""))
    if not date_m or not time_m:
        return None
    y, mo, d = (int(g) for g in date_m.groups())
    h, mi, s = (int(g) for g in time_m.groups())
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 60):
        return None
    try:
        return float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def _number(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DecodeError(f"LASS field {key!r} is not a number: {text[:40]!r}") from None
    if not math.isfinite(value):
        raise DecodeError(f"LASS field {key!r} is not finite: {text[:40]!r}")
    return value


def decode_lass(topic: str, payload: bytes, received_at: float) -> Decoded:
    fields = _fields(payload)
    if "device_id" not in fields:
        raise DecodeError("LASS payload has no device_id")
    device_id = check_device_id(fields["device_id"], ANY_DEVICE_ID)
    ts = _device_time(fields)
    legacy = 0 if ts is not None else int(Flag.LEGACY_FORMAT)
    time_s, clock_flags = resolve_time(ts if ts is not None else 0, received_at)
    base = clock_flags | legacy
    rows: list[ReadingRow] = []
    for key, text in fields.items():
        metric = KNOWN_SENSOR_KEYS.get(key)
        if metric is None:
            if key in METADATA_KEYS or key.lower() in METADATA_KEYS or not _EXTRA_KEY.match(key):
                continue
            metric = "lass_" + key
        name, raw, value, flags = metric_value(metric, _number(key, text))
        if metric.startswith("lass_"):
            flags |= Flag.LEGACY_FORMAT
        rows.append((time_s, device_id, name, raw, value, flags | base, None))
    if not rows:
        raise DecodeError("LASS payload carries no sensor values (no s_d0/s_d1/s_d2/s_t0/s_h0)")
    location = None
    if "gps_lat" in fields and "gps_lon" in fields:
        lat, lon = _number("gps_lat", fields["gps_lat"]), _number("gps_lon", fields["gps_lon"])
        if -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0):
            location = (lat, lon)
    return Decoded(device_id=device_id, kind="lass", readings=rows, location=location)
