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
