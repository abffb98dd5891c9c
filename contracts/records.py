"""Typed results of decoding, shared by codecs, the pipeline and the batch writer.

Readings are plain tuples in the layout of the staging table, because the hot path
builds tens of thousands per second and hands them to asyncpg's COPY unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# (ts_unix_seconds, device_id, metric, raw, value, flags, calibration_id)
ReadingRow = tuple[float, str, str, float, float | None, int, int | None]
# (ts_unix_seconds, device_id, occupied, mag, batt_mv, temp, ev, flags)
ParkingRow = tuple[float, str, bool | None, float | None, int | None, float | None, str, int]


@dataclass(slots=True)
class LorawanUplink:
    """One ChirpStack uplink as the codec read it: identity, radio quality and the parking frame.

    The device id is not in it: the pipeline maps `dev_eui` to a citysense device (devices.dev_eui)."""

    deduplication_id: str  # ChirpStack's UUID of the uplink: the same on every redelivery
    dev_eui: str
    application_id: str
    time: float  # Unix seconds; the network server's time, or the receive time (then flags say so)
    f_cnt: int
    f_port: int
    rssi: int | None  # of the best receiving gateway
    snr: float | None
    gateway_id: str | None
    gateways: int  # how many gateways heard it
    occupied: bool | None
    mag: float | None
    batt_mv: int | None
    temp: float | None
    ev: str  # change | heartbeat | boot
    flags: int


class DecodeError(ValueError):
    """A message that cannot be stored; the text is the reason kept in rejected_messages."""


@dataclass(slots=True)
class Decoded:
    """Everything one MQTT message contributes to the database."""

    device_id: str
    kind: str  # airbox | parking | lass
    readings: list[ReadingRow] = field(default_factory=list)
    parking: list[ParkingRow] = field(default_factory=list)
    status: dict[str, object] | None = None
    location: tuple[float, float] | None = None
    codec: str = "v1"
    seq: int | None = None  # highest `seq` in a v1 message: what a commit receipt to the device covers
    lorawan: LorawanUplink | None = None  # a ChirpStack uplink
    dev_eui: str | None = None  # a ChirpStack event (uplink, status, join): the pipeline sets device_id from it
