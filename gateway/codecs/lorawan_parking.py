"""The citysense parking sensor's LoRaWAN frame (FRMPayload on fPort 10), 8 bytes, big-endian.

    byte 0     header: bits 7..4 layout version (1), bits 3..0 event (0 change, 1 heartbeat, 2 boot)
    byte 1     state: bit 0 occupied, bit 1 occupancy known (0: the detector has not decided;
               occupied is then null), bits 7..2 reserved, 0
    bytes 2-3  field magnitude in 0.1 µT, unsigned; 0xFFFF = not measured
    bytes 4-5  battery in mV, unsigned; 0 = not measured
    bytes 6-7  temperature in 0.01 °C, signed; -32768 (0x8000) = not measured

Eight bytes fit every LoRaWAN data rate (51 bytes at EU868 DR0). The firmware writes it with
firmware/parking/lorawan_payload.py; tests/firmware/test_lorawan_payload.py proves that what
one writes the other reads. A frame of another length, version, event or with reserved bits
set is refused with the reason (it is not ours, or from a firmware this gateway predates).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from contracts.records import DecodeError

PARKING_FPORT = 10
LAYOUT_VERSION = 1
FRAME_BYTES = 8
EVENTS = ("change", "heartbeat", "boot")  # index = the header's low nibble
_FRAME = struct.Struct(">BBHHh")
_OCCUPIED = 0x01
_KNOWN = 0x02
MAG_UNKNOWN = 0xFFFF
BATT_UNKNOWN = 0
TEMP_UNKNOWN = -32768


@dataclass(frozen=True, slots=True)
class ParkingFrame:
    ev: str
    occupied: bool | None
    mag: float | None  # µT
    batt_mv: int | None
    temp: float | None  # °C


def decode_parking_frame(frame: bytes) -> ParkingFrame:
    """The values of one frame, or DecodeError saying which byte is wrong."""
    if len(frame) != FRAME_BYTES:
        raise DecodeError(f"parking frame is {len(frame)} bytes; layout {LAYOUT_VERSION} has {FRAME_BYTES}")
    header, state, mag, batt, temp = _FRAME.unpack(frame)
    version, event = header >> 4, header & 0x0F
    if version != LAYOUT_VERSION:
        raise DecodeError(f"parking frame layout version {version}; this gateway reads version {LAYOUT_VERSION}")
    if event >= len(EVENTS):
        raise DecodeError(f"parking frame event {event} is not 0 (change), 1 (heartbeat) or 2 (boot)")
    if state & ~(_OCCUPIED | _KNOWN):
        raise DecodeError(f"parking frame state byte 0x{state:02x} sets reserved bits")
    if state & _OCCUPIED and not state & _KNOWN:
        raise DecodeError("parking frame says occupied but not that occupancy is known")
    return ParkingFrame(
        ev=EVENTS[event],
        occupied=bool(state & _OCCUPIED) if state & _KNOWN else None,
        mag=None if mag == MAG_UNKNOWN else mag / 10,
        batt_mv=None if batt == BATT_UNKNOWN else batt,
        temp=None if temp == TEMP_UNKNOWN else temp / 100,
    )
