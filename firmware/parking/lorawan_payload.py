"""The parking sensor's LoRaWAN uplink frame: 8 bytes for fPort 10, what a maker with a LoRa board sends.

    byte 0     header: bits 7..4 layout version (1), bits 3..0 event (0 change, 1 heartbeat, 2 boot)
    byte 1     state: bit 0 occupied, bit 1 occupancy known (0 while the detector has not decided)
    bytes 2-3  field deviation from the learnt baseline (the v1 payload's `mag`), 0.1 uT, unsigned;
               0xFFFF = not measured
    bytes 4-5  battery in mV, unsigned; 0 = not measured
    bytes 6-7  temperature in 0.01 degC, signed; -32768 = not measured
All big-endian. The gateway reads it in gateway/codecs/lorawan_parking.py (tested against this
encoder). Values beyond a field are clamped to its largest (6553.4 uT, 65535 mV, +-327.67 degC),
which the gateway's range checks then flag. Pure: no I/O, one 8-byte bytes object per call.
"""

import struct

PARKING_FPORT = 10
LAYOUT_VERSION = 1
EVENTS = ("change", "heartbeat", "boot")
MAG_UNKNOWN = 0xFFFF
BATT_UNKNOWN = 0
TEMP_UNKNOWN = -32768


def _clamp(value: int, low: int, high: int) -> int:
    return low if value < low else high if value > high else value


def encode_parking_frame(
    ev: str,
    occupied: "bool | None",
    mag: "float | None" = None,
    batt_mv: "int | None" = None,
    temp: "float | None" = None,
) -> bytes:
    """The frame of one parking event; ValueError for an event that is not change|heartbeat|boot."""
    if ev not in EVENTS:
        raise ValueError("ev must be change, heartbeat or boot")
    state = 0 if occupied is None else (0x03 if occupied else 0x02)
    mag_field = MAG_UNKNOWN if mag is None else _clamp(int(round(mag * 10)), 0, MAG_UNKNOWN - 1)
    batt_field = BATT_UNKNOWN if batt_mv is None else _clamp(int(batt_mv), 1, 0xFFFF)
    temp_field = TEMP_UNKNOWN if temp is None else _clamp(int(round(temp * 100)), -32767, 32767)
    return struct.pack(">BBHHh", (LAYOUT_VERSION << 4) | EVENTS.index(ev), state, mag_field, batt_field, temp_field)
