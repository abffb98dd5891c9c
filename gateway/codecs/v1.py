"""citysense payload v1 (JSON): single readings, store-and-forward batches and parking events."""

from __future__ import annotations

from typing import Any

import orjson

from contracts.flags import Flag
from contracts.records import Decoded, DecodeError, ParkingRow, ReadingRow
from contracts.topics import split_v1_topic
from gateway.validation import measurement_rows, metric_value, resolve_time

MAX_METRICS = 32
MAX_BATCH = 2000
PARKING_EVENTS = ("change", "heartbeat", "boot")


def _load(payload: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"payload is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"payload must be a JSON object, got {type(doc).__name__}")
    return doc


def _seq(entry: dict[str, Any]) -> int | None:
    seq = entry.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or seq >= 2**63):
        raise DecodeError(f"seq must be a non-negative integer, got {str(seq)[:40]!r}")
    return seq


def _measurements(entry: dict[str, Any]) -> dict[str, Any]:
    m = entry.get("m")
    if not isinstance(m, dict):
        raise DecodeError("'m' must be an object of metric: number")
    if not m:
        raise DecodeError("'m' holds no metrics")
    if len(m) > MAX_METRICS:
        raise DecodeError(f"'m' holds {len(m)} metrics; at most {MAX_METRICS}")
    return m


def _airbox_rows(device_id: str, entry: dict[str, Any], received_at: float, extra: int) -> list[ReadingRow]:
    ts, clock_flags = resolve_time(entry.get("ts"), received_at)
    return measurement_rows(device_id, ts, _measurements(entry), clock_flags | extra)


def _parking_row(device_id: str, entry: dict[str, Any], ev: object, received_at: float, extra: int) -> ParkingRow:
    ts, flags = resolve_time(entry.get("ts"), received_at)
    if ev not in PARKING_EVENTS:
        raise DecodeError(f"'ev' must be one of {', '.join(PARKING_EVENTS)}, got {str(ev)[:40]!r}")
    m = _measurements(entry)
    values: dict[str, float] = {}
    for name, raw_value in m.items():
        metric, raw, _value, metric_flags = metric_value(name, raw_value)
        values[metric] = raw
        flags |= metric_flags
    occupied = values.get("occupied")
    if occupied is not None and occupied not in (0.0, 1.0):
        raise DecodeError(f"'occupied' must be 0 or 1, got {occupied!r}")
    batt = values.get("batt_mv")
    if batt is not None and not -(2**31) <= batt < 2**31:  # parking_events.batt_mv is an integer column
        raise DecodeError(f"'batt_mv' {batt!r} does not fit a 32-bit integer")
    return (
        ts,
        device_id,
        None if occupied is None else occupied == 1.0,
        values.get("mag"),
        None if batt is None else int(batt),
        values.get("t"),
        str(ev),
        flags | extra,
    )


def decode_v1(topic: str, payload: bytes, received_at: float) -> Decoded:
    kind, device_id = split_v1_topic(topic, "up")
    doc = _load(payload)
    if doc.get("v") != 1:
        raise DecodeError(f"unsupported payload version {str(doc.get('v'))[:20]!r} (expected 1)")
    if doc.get("id") != device_id:
        raise DecodeError(f"payload id {str(doc.get('id'))[:80]!r} differs from topic id {device_id!r}")
    out = Decoded(device_id=device_id, kind=kind)
    batch = doc.get("batch")
    if batch is not None:
        if not isinstance(batch, list) or not batch:
            raise DecodeError("'batch' must be a non-empty list of readings")
        if len(batch) > MAX_BATCH:
            raise DecodeError(f"'batch' holds {len(batch)} entries; at most {MAX_BATCH}")
        entries, extra = batch, int(Flag.REPLAYED)
    else:
        entries, extra = [doc], 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise DecodeError("each batch entry must be an object")
        seq = _seq(entry)
        if seq is not None and (out.seq is None or seq > out.seq):
            out.seq = seq
        if kind == "parking":
            out.parking.append(_parking_row(device_id, entry, entry.get("ev", doc.get("ev")), received_at, extra))
        else:
            out.readings.extend(_airbox_rows(device_id, entry, received_at, extra))
    return out
