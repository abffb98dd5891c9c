"""Device status messages (retained; the broker's last will sets online=false)."""

from __future__ import annotations

from typing import Any

import orjson

from contracts.records import Decoded, DecodeError
from contracts.topics import split_v1_topic

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # the device_status columns are integer
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "online": bool, "fw": str, "ip": str, "rssi": int, "heap": int, "queued": int,
}


def _check_detector_fields(doc: dict[str, Any]) -> None:
    """A parking sensor's detector health (firmware/parking/app.py): `base_age_s` (whole seconds
    since it last saw the empty bay, or null), `conf` (0..1) and `relearn` (bool). Checked here
    because the database derives columns from them (migration 0015), which the API and the alerts
    read: a wrong type or range is a dead letter, never a failed batch or a wrong column."""
    age = doc.get("base_age_s")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= INT32_MAX):
        raise DecodeError(f"status field 'base_age_s' must be null or whole seconds in 0..{INT32_MAX}")
    conf = doc.get("conf")
    if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf <= 1.0):
        raise DecodeError("status field 'conf' must be a number in 0..1")
    relearn = doc.get("relearn")
    if relearn is not None and not isinstance(relearn, bool):
        raise DecodeError("status field 'relearn' must be true or false")


def decode_status(topic: str, payload: bytes, received_at: float) -> Decoded:
    kind, device_id = split_v1_topic(topic, "status")
    try:
        doc: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"status is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError("status must be a JSON object")
    if not isinstance(doc.get("online"), bool):
        raise DecodeError("status needs 'online': true|false")
    _check_detector_fields(doc)
    status: dict[str, object] = {}
    for key, kind_of in _FIELDS.items():
        value = doc.get(key)
        if value is None:
            continue
        if (kind_of is int and isinstance(value, bool)) or not isinstance(value, kind_of):
            raise DecodeError(f"status field {key!r} has the wrong type ({type(value).__name__})")
        if isinstance(value, str) and (len(value) > 64 or "\x00" in value):
            raise DecodeError(f"status field {key!r} is longer than 64 characters or holds NUL")
        if isinstance(value, int) and not INT32_MIN <= value <= INT32_MAX:
            raise DecodeError(f"status field {key!r} = {value} does not fit a 32-bit integer")
        status[key] = value
    raw = {k: v for k, v in doc.items() if isinstance(k, str) and len(k) <= 32}
    if b"\\u0000" in orjson.dumps(raw):
        raise DecodeError("status holds a NUL character, which PostgreSQL's jsonb refuses")
    status["raw"] = raw
    return Decoded(device_id=device_id, kind=kind, status=status)
