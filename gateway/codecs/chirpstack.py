"""ChirpStack v4 events (MQTT integration, JSON marshaler) of citysense LoRaWAN parking sensors: uplinks,
and the `status` and `join` events that say a device is alive (and its battery).

Topic `application/{application_id}/device/{dev_eui}/event/up`; the payload is the protobuf
JSON mapping of `integration.UplinkEvent`: `deduplicationId` (UUID), `time`, `deviceInfo`
{`devEui`, `applicationId`, `deviceName`, `tags`...}, `fCnt`, `fPort`, `data` (base64 FRMPayload),
`object` (only when a device-profile codec ran), `rxInfo` [{`gatewayId`, `rssi`, `snr`}...].
The JSON mapping leaves out every field that holds its default (`fCnt` 0, `adr` false, an
empty `rxInfo`), so only `deduplicationId`, `deviceInfo.devEui` and a frame are required.

The frame is `data` decoded by gateway/codecs/lorawan_parking.py; without `data`, an
`object` with the v1 payload's names (`occupied`, `mag`, `batt_mv`, `t`, `ev`) from a
device-profile codec is read instead. The device id is not known here: the pipeline maps
`dev_eui` to a citysense device (devices.dev_eui) and dead-letters an EUI no device has.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import datetime
from typing import Any

import orjson

from contracts.ids import check_dev_eui
from contracts.records import Decoded, DecodeError, LorawanUplink
from contracts.topics import split_chirpstack_topic
from gateway.codecs.lorawan_parking import EVENTS, PARKING_FPORT, ParkingFrame, decode_parking_frame
from gateway.validation import metric_value, resolve_time

_FRACTION = re.compile(r"(\.\d{6})\d+")  # RFC 3339 nanoseconds: Python reads microseconds
MAX_GATEWAYS = 64


def _time(doc: dict[str, Any]) -> float | None:
    text = doc.get("time")
    if text is None:
        return None
    if not isinstance(text, str) or len(text) > 40:
        raise DecodeError("'time' must be an RFC 3339 timestamp")
    try:
        stamp = datetime.fromisoformat(_FRACTION.sub(r"\1", text))
    except ValueError:
        raise DecodeError(f"'time' {text!r} is not an RFC 3339 timestamp") from None
    if stamp.tzinfo is None:
        raise DecodeError(f"'time' {text!r} has no time zone")
    return stamp.timestamp()


def _int_field(doc: dict[str, Any], key: str, low: int, high: int) -> int:
    value = doc.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DecodeError(f"{key!r} must be an integer within {low}..{high}, got {str(value)[:20]!r}")
    return value


def _radio(doc: dict[str, Any]) -> tuple[int | None, float | None, str | None, int]:
    """(rssi, snr, gateway id) of the gateway that heard the uplink best, and how many heard it."""
    rx = doc.get("rxInfo", [])
    if not isinstance(rx, list) or len(rx) > MAX_GATEWAYS:
        raise DecodeError(f"'rxInfo' must be a list of at most {MAX_GATEWAYS} gateways")
    best: tuple[int, float | None, str | None] | None = None
    for entry in rx:
        if not isinstance(entry, dict):
            raise DecodeError("each 'rxInfo' entry must be an object")
        rssi, snr, gateway = entry.get("rssi"), entry.get("snr"), entry.get("gatewayId")
        if isinstance(rssi, bool) or not isinstance(rssi, int) or not -200 <= rssi <= 50:
            continue  # a gateway without a usable RSSI says nothing about the link
        if isinstance(snr, bool) or not isinstance(snr, int | float) or not -50 <= snr <= 50:
            snr = None
        if not isinstance(gateway, str) or len(gateway) > 64:
            gateway = None
        if best is None or rssi > best[0]:
            best = (rssi, None if snr is None else float(snr), gateway)
    if best is None:
        return None, None, None, len(rx)
    return best[0], best[1], best[2], len(rx)


def _object_frame(obj: object) -> ParkingFrame:
    """A frame from a device-profile codec's `object`, in the v1 payload's names."""
    if not isinstance(obj, dict):
        raise DecodeError("uplink has no 'data' and no 'object' to read a parking frame from")
    ev = obj.get("ev", "change")
    if ev not in EVENTS:
        raise DecodeError(f"'object.ev' must be one of {', '.join(EVENTS)}, got {str(ev)[:40]!r}")
    values: dict[str, float] = {}
    for key in ("occupied", "mag", "batt_mv", "t"):
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int | float):
            raise DecodeError(f"'object.{key}' must be a number, got {type(value).__name__}")
        values[key] = float(value)
    occupied = values.get("occupied")
    if occupied is not None and occupied not in (0.0, 1.0):
        raise DecodeError(f"'object.occupied' must be 0 or 1, got {occupied!r}")
    batt = values.get("batt_mv")
    return ParkingFrame(
        ev=str(ev), occupied=None if occupied is None else occupied == 1.0, mag=values.get("mag"),
        batt_mv=None if batt is None else int(batt), temp=values.get("t"),
    )


def _frame(doc: dict[str, Any], f_port: int) -> ParkingFrame:
    data = doc.get("data")
    if data is None or data == "":
        return _object_frame(doc.get("object"))
    if f_port != PARKING_FPORT:
        raise DecodeError(f"fPort {f_port} carries no citysense parking frame (expected fPort {PARKING_FPORT})")
    if not isinstance(data, str) or len(data) > 344:  # 255 bytes, the largest FRMPayload, in base64
        raise DecodeError("'data' must be the base64 FRMPayload of at most 255 bytes")
    try:
        frame = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"'data' {data[:40]!r} is not base64") from None
    return decode_parking_frame(frame)


def _flags(frame: ParkingFrame) -> int:
    """The registry's range flags of the frame's values (a frame can hold 6553.4 µT)."""
    flags = 0
    for metric, value in (("mag", frame.mag), ("batt_mv", frame.batt_mv), ("t", frame.temp)):
        if value is not None:
            flags |= metric_value(metric, value)[3]
    return flags


def _event(topic: str, event: str, payload: bytes) -> tuple[str, str, dict[str, Any], str]:
    """(application id, devEui, the event, its deduplicationId): what every ChirpStack event carries."""
    application_id, dev_eui = split_chirpstack_topic(topic, event)
    try:
        doc: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"ChirpStack event is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError("ChirpStack event must be a JSON object")
    dedup = doc.get("deduplicationId")
    try:
        deduplication_id = str(uuid.UUID(dedup)) if isinstance(dedup, str) and len(dedup) <= 64 else None
    except ValueError:
        deduplication_id = None
    if deduplication_id is None:
        raise DecodeError("ChirpStack event needs 'deduplicationId', a UUID")
    info = doc.get("deviceInfo")
    if not isinstance(info, dict) or "devEui" not in info:
        raise DecodeError("ChirpStack event needs 'deviceInfo.devEui'")
    if check_dev_eui(info["devEui"]) != dev_eui:
        raise DecodeError(f"deviceInfo.devEui {str(info['devEui'])[:40]!r} differs from topic devEui {dev_eui!r}")
    return application_id, dev_eui, doc, deduplication_id


def decode_chirpstack_up(topic: str, payload: bytes, received_at: float) -> Decoded:
    application_id, dev_eui, doc, deduplication_id = _event(topic, "up", payload)
    f_port = _int_field(doc, "fPort", 0, 255)
    f_cnt = _int_field(doc, "fCnt", 0, 2**32 - 1)
    frame = _frame(doc, f_port)
    ts, flags = resolve_time(_time(doc), received_at)
    rssi, snr, gateway_id, gateways = _radio(doc)
    uplink = LorawanUplink(
        deduplication_id=deduplication_id, dev_eui=dev_eui, application_id=application_id, time=ts, f_cnt=f_cnt,
        f_port=f_port, rssi=rssi, snr=snr, gateway_id=gateway_id, gateways=gateways, occupied=frame.occupied,
        mag=frame.mag, batt_mv=frame.batt_mv, temp=frame.temp, ev=frame.ev, flags=flags | _flags(frame),
    )
    return Decoded(device_id="", kind="parking", lorawan=uplink, dev_eui=dev_eui)


def decode_chirpstack_status(topic: str, payload: bytes, received_at: float) -> Decoded:
    """A `status` event (the device's answer to ChirpStack's DevStatusReq: `batteryLevel` in %,
    `margin` in dB, `externalPowerSource`, `batteryLevelUnavailable`) or a `join`: the device is
    online, and its status document is the event's fields. A redelivery writes the same row again."""
    event = topic.rsplit("/", 1)[-1]
    _application_id, dev_eui, doc, deduplication_id = _event(topic, event, payload)
    raw: dict[str, object] = {"source": "chirpstack", "event": event, "deduplicationId": deduplication_id}
    time_s = _time(doc)
    if time_s is not None:
        raw["time"] = time_s
    if event == "status":
        external = doc.get("externalPowerSource", False)
        unavailable = doc.get("batteryLevelUnavailable", False)
        if not isinstance(external, bool) or not isinstance(unavailable, bool):
            raise DecodeError("'externalPowerSource' and 'batteryLevelUnavailable' must be true or false")
        level = doc.get("batteryLevel", 0)
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 <= level <= 100:
            raise DecodeError(f"'batteryLevel' must be a percentage, got {str(level)[:20]!r}")
        raw.update(batteryLevel=None if unavailable or external else float(level), externalPowerSource=external,
                   margin=_int_field(doc, "margin", -128, 127))
    else:
        dev_addr = doc.get("devAddr")
        if isinstance(dev_addr, str) and len(dev_addr) <= 16:
            raw["devAddr"] = dev_addr
    return Decoded(device_id="", kind="parking", status={"online": True, "raw": raw}, dev_eui=dev_eui)
